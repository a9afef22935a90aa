"""The shipped rubric example: its data is right, its prompts hold no reference, and `polyepo
train` selects the rubric reward from config and trains a real (tiny) model through TRL with the
judge on loopback, the policy never seeing a reference."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from _rubric_judge import judge, message, score_requests
from polyepo.rewards.rubric import Rubric, leaked_lines
from polyepo.standin import fast_options
from polyepo.tasks import load_task
from polyepo.tasks.rubric_examples import load_problems


def _stairs(n: int) -> int:
    w = [1, 1, 2]
    while len(w) <= n:
        w.append(w[-1] + w[-2] + w[-3])
    return w[n]


#: each math problem solved again by brute force
BRUTE = {
    "divisor-sum-360": lambda: sum(d for d in range(1, 361) if 360 % d == 0),
    "stairs-123": lambda: _stairs(10),
    "last-digits-7-2023": lambda: pow(7, 2023, 100),
    "multiples-3-5-not-7": lambda: sum(1 for n in range(1, 1001) if (n % 3 == 0 or n % 5 == 0) and n % 7),
}


def reference_lines(reference: str, min_chars: int = 12) -> list[str]:
    return [" ".join(x.split()) for x in reference.splitlines() if len("".join(x.split())) >= min_chars]


def test_math_answers_match_brute_force_and_the_reference():
    math = [p for p in load_problems() if p["kind"] == "math"]
    assert sorted(p["problem_id"] for p in math) == sorted(BRUTE)
    for p in math:
        assert int(p["answer"]) == BRUTE[p["problem_id"]]()
        assert re.findall(r"\\boxed\{(\d+)\}", p["reference"]) == [p["answer"]]


def run_check(code: str, test: str, entry_point: str) -> subprocess.CompletedProcess:
    program = f"{code}\n{test}\ncheck({entry_point})\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


def test_code_references_pass_their_tests_and_a_wrong_solution_does_not():
    code = [p for p in load_problems() if p["kind"] == "code"]
    assert len(code) == 3
    for p in code:
        solution = re.search(r"```python\n(.*?)```", p["reference"], re.S).group(1)
        assert run_check(solution, p["test"], p["entry_point"]).returncode == 0, p["problem_id"]
        wrong = f"def {p['entry_point']}(*args):\n    return 0\n"
        assert run_check(wrong, p["test"], p["entry_point"]).returncode != 0, p["problem_id"]


def test_every_problem_has_a_valid_rubric_file():
    for row in load_task("rubric_examples").rows("train"):
        rubric = Rubric.load(row["rubric"], problem_id=row["problem_id"])
        assert rubric.problem_id == row["problem_id"] and rubric.source == "hand"
        assert 1 <= sum(i.kind == "outcome" for i in rubric.items) <= 2 and len(rubric.items) <= 6


def test_prompts_hold_the_problem_and_none_of_the_reference():
    rows = load_task("rubric_examples").rows("train")
    assert len(rows) == 7 and {r["kind"] for r in rows} == {"math", "code"}
    for r in rows:
        assert r["problem"] in r["prompt"] and r["reference"].strip()
        assert leaked_lines(r["prompt"], r["reference"], r["problem"]) == []
        assert not [line for line in reference_lines(r["reference"]) if line in " ".join(r["prompt"].split())]
    math = [r for r in rows if r["kind"] == "math"]
    assert all(r["answer"] not in r["prompt"] for r in math)


def test_dataset_prompts_for_chat_models_hold_no_reference():
    pytest.importorskip("datasets")
    from polyepo.workflow.run import to_dataset

    rows = load_task("rubric_examples").rows("train")
    ds = to_dataset(rows, SimpleNamespace(chat_template="{{ messages }}"), system_prompt="Be careful.")
    for row in ds:
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        text = " ".join(" ".join(m["content"].split()) for m in row["prompt"])
        assert not [line for line in reference_lines(row["reference"]) if line in text]


def test_task_options():
    assert load_task("rubric_examples", kind="math").clusterer.name == "answer"
    code = load_task("rubric_examples", kind="code", verifiable=True, repeat=3)
    assert code.reward.name == "rubric" and code.reward.options == {"verifiable": "code_tests"}
    assert len(code.rows("train")) == 9 and code.clusterer.name == "python_ast"
    assert load_task("rubric_examples", kind="math", verifiable=True).reward.options == {"verifiable": "math_answer"}
    assert all(r["rubric"] == "" for r in load_task("rubric_examples", shipped_rubrics=False).rows("train"))
    with pytest.raises(ValueError, match="kind must be one of math, code, all"):
        load_task("rubric_examples", kind="physics")
    with pytest.raises(ValueError, match="verifiable=True needs kind"):
        load_task("rubric_examples", verifiable=True)
    with pytest.raises(ValueError, match="valid splits: train"):
        load_task("rubric_examples").rows("test")


def test_the_example_run_config_selects_the_rubric_reward(chat_server, tmp_path):
    pytest.importorskip("trl")
    from polyepo.workflow.config import ConfigError, load_run_config
    from polyepo.workflow.run import prepare

    example = Path(__file__).resolve().parents[1] / "examples" / "smollm2-rubric-math.yaml"
    options = {**fast_options(chat_server), "rubric_dir": str(tmp_path)}
    cfg = load_run_config(example, [f"reward_options={json.dumps(options)}", f"output_dir={tmp_path / 'run'}"])
    prep = prepare(cfg)
    assert prep.reward_name == "rubric" and prep.reward_fn.__name__ == "rubric" and len(prep.rows) == 4 * 32
    assert prep.clusterer_name == "answer" and prep.reward_fn.options.on_failure == "wait"
    assert prep.reward_fn.options.item_policy == "none" and prep.reward_fn.wait_limit_s == 1500.0
    assert prep.reward_fn.client.config.max_concurrency == 16
    bad = load_run_config(example, ["reward_options={echo_action: ban}"])
    with pytest.raises(ConfigError, match="echo_action must be one of flag, penalize, zero"):
        prepare(bad)


def test_shipped_math_with_the_real_math_answer_reward(chat_server, tmp_path):
    """verifiable=True mixes in the registered math_answer reward (when it is installed)."""
    from polyepo.rewards import REWARDS, make_reward

    if "math_answer" not in REWARDS:
        pytest.skip("the math_answer reward is not part of this build")
    task = load_task("rubric_examples", kind="math", verifiable=True)
    row = next(r for r in task.rows("train") if r["problem_id"] == "divisor-sum-360")
    chat_server.responder = judge
    f = make_reward(task.reward.name, **task.reward.options, **fast_options(chat_server), rubric_dir=str(tmp_path))
    completions = ["<O1> so the sum is \\boxed{1170}", "<P1> hence \\boxed{1171}"]
    cols = {k: [row[k]] * 2 for k in row if k != "prompt"}
    # shipped rubric O1, P1, P2, P3: (1) O=1, P=0 -> judged 0.5, V=1 -> 0.75; (2) O=0, P=1/3 -> 1/6, V=0 -> 1/12
    assert f([row["prompt"]] * 2, completions, **cols) == [0.75, pytest.approx(1 / 12)]
    assert [r.verifiable for r in f.last_results] == [1.0, 0.0]


def byte_bpe_tokenizer(texts: list[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer trained here on ``texts`` (decodes any text exactly)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   model_max_length=1024)


@pytest.mark.slow
def test_train_step_with_rubric_reward_the_policy_never_sees_a_reference(chat_server, tmp_path):
    """Two Poly-EPO steps on rubric_examples (math) with a tiny Llama: every token sequence the
    model is run on is decoded, and none holds a line of any reference; the judge got them all."""
    pytest.importorskip("trl")
    from polyepo.models import tiny_llama
    from polyepo.workflow.config import load_run_config
    from polyepo.workflow.run import build_trainer, prepare

    rows = load_task("rubric_examples", kind="math").rows("train")
    tok = byte_bpe_tokenizer([r["prompt"] for r in rows] + [r["reference"] for r in rows])
    model = tiny_llama(len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    chat_server.responder = judge
    options = {**fast_options(chat_server), "rubric_dir": str(tmp_path / "rubrics")}
    trainer_opts = dict(max_steps=2, per_device_train_batch_size=8, num_generations=4, max_completion_length=12,
                        learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1, seed=0,
                        estimator="poly_epo", set_size=2)
    cfg = load_run_config(None, [f"model={tmp_path / 'tiny'}", "task=rubric_examples", "task_options={kind: math}",
                                 f"reward_options={json.dumps(options)}", f"output_dir={tmp_path / 'run'}",
                                 f"trainer={json.dumps(trainer_opts)}"])
    trainer = build_trainer(prepare(cfg))
    seen: list[str] = []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:
            seen.extend(tok.batch_decode(ids, skip_special_tokens=True))

    trainer.model.register_forward_pre_hook(record, with_kwargs=True)
    trainer.train()
    assert seen, "the model was never run"
    lines = {line for r in rows for line in reference_lines(r["reference"])}
    for text in seen:
        flat = " ".join(text.split())
        assert not [line for line in lines if line in flat]
    assert any(r["problem"] in " ".join(t.split()) for t in seen for r in rows)
    scored = score_requests(chat_server)
    assert len(scored) >= 1 and all(any(r["reference"].strip() in message(b) for r in rows) for b in scored)
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [x for x in logs if "rubric/requests" in x]
    assert len(steps) == 2 and all(x["rubric/judge_failures"] == 0 for x in steps)
