"""The judge client through the real openai client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import random
import threading
import time

import pytest

from polyepo.judge import (
    FailurePolicy,
    InvalidReply,
    JudgeClient,
    JudgeConfig,
    JudgeRequest,
    parse_json_object,
)
from polyepo.judge.limits import CircuitBreaker, RateLimiter, backoff_delay
from polyepo.standin import ChatServer, Raw, Reply, Status, fast_options, last_user_message

pytest.importorskip("openai")


def client_for(server, **overrides) -> JudgeClient:
    return JudgeClient(JudgeConfig(**fast_options(server, **overrides)), namespace="test")


def ask(text="hello", validate=parse_json_object) -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": text}], validate=validate)


def test_good_reply_and_request_shape(chat_server):
    chat_server.push(Reply('{"verdict": 3}'))
    client = client_for(chat_server)
    out = client.complete(ask())
    assert out.ok and out.value == {"verdict": 3}
    assert (out.requests, out.retries, out.reasks, out.cache_hit) == (1, 0, 0, False)
    body = chat_server.requests[0]
    assert body["model"] == "test-judge" and body["temperature"] == 0.0
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert body["response_format"] == {"type": "json_object"}
    assert client.stats.snapshot()["successes"] == 1


def test_429_then_success_honours_retry_after(chat_server):
    chat_server.push(Status(429, "slow down", headers={"Retry-After": "0.2"}), Reply('{"ok": true}'))
    client = client_for(chat_server, backoff_max_s=1.0)
    start = time.monotonic()
    out = client.complete(ask())
    assert out.ok and out.retries == 1 and out.requests == 2
    assert time.monotonic() - start >= 0.2  # waited as the server asked, not the 0.01 s backoff
    assert client.stats.snapshot()["retries"] == 1


def test_500s_until_retry_budget_spent_fail_counted_and_logged(chat_server, caplog):
    chat_server.push(*[Status(500, "boom")] * 3, Reply('{"late": 1}'))
    client = client_for(chat_server, max_retries=2)
    with caplog.at_level(logging.WARNING, logger="polyepo.judge"):
        out = client.complete(ask())
    assert not out.ok and out.error_kind == "server" and out.requests == 3 and out.retries == 2
    assert "after 2 retries" in out.error and "boom" in out.error
    assert len(chat_server.requests) == 3  # the 4th scripted reply was never asked for
    stats = client.stats.snapshot()
    assert stats["failures"] == 1 and stats["errors/server"] == 1
    assert any("judge call failed" in r.message for r in caplog.records)


def test_timeout_is_retried_then_fails_when_budget_spent(chat_server):
    chat_server.push(Reply('{"slow": 1}', delay_s=1.5), Reply('{"fast": 1}'))
    out = client_for(chat_server, timeout_s=0.3, max_retries=1).complete(ask())
    assert out.ok and out.value == {"fast": 1} and out.retries == 1
    chat_server.push(Reply('{"slow": 1}', delay_s=1.5))
    out = client_for(chat_server, timeout_s=0.3, max_retries=0).complete(ask())
    assert not out.ok and out.error_kind == "timeout" and out.elapsed_s < 1.5


def test_unreadable_http_body_is_retried(chat_server):
    chat_server.push(Raw(b'{"choices": [tru'), Raw(b"<html>bad gateway</html>", content_type="text/html"),
                     Reply('{"x": 1}'))
    out = client_for(chat_server).complete(ask())
    assert out.ok and out.retries == 2 and out.requests == 3


def test_client_errors_are_not_retried(chat_server):
    chat_server.push(Status(401, "bad key"), Reply('{"x": 1}'))
    out = client_for(chat_server).complete(ask())
    assert not out.ok and out.error_kind == "client" and out.requests == 1 and "bad key" in out.error


def test_json_mode_auto_turns_off_when_server_rejects_it():
    with ChatServer(lambda body: Reply('{"x": 1}'), reject_response_format=True) as server:
        client = client_for(server, json_mode="auto")
        assert client.complete(ask("a")).ok and client.complete(ask("b")).ok
        assert ["response_format" in b for b in server.requests] == [True, False, False]
        strict = client_for(server, json_mode="on")
        out = strict.complete(ask("c"))
        assert not out.ok and out.error_kind == "client"
        off = client_for(server, json_mode="off")
        assert off.complete(ask("d")).ok and "response_format" not in server.requests[-1]


def test_invalid_reply_is_sent_back_with_the_reason(chat_server):
    def validate(text):
        data = parse_json_object(text)
        if "score" not in data:
            raise InvalidReply('the key "score" is missing')
        return data["score"]

    chat_server.push(Reply("Sure! Here you go: not json at all"), Reply('{"grade": 1}'), Reply('```json\n{"score": 7}\n```'))
    out = client_for(chat_server, max_reasks=2).complete(ask(validate=validate))
    assert out.ok and out.value == 7 and out.reasks == 2 and out.requests == 3
    second, third = chat_server.requests[1], chat_server.requests[2]
    assert "not valid JSON" in last_user_message(second) or "no JSON object" in last_user_message(second)
    assert 'the key "score" is missing' in last_user_message(third)
    assert third["messages"][-2] == {"role": "assistant", "content": '{"grade": 1}'}
    chat_server.push(*[Reply("nope")] * 2)
    out = client_for(chat_server, max_reasks=1).complete(ask(validate=validate))
    assert not out.ok and out.error_kind == "invalid_reply" and out.reasks == 1


def test_cache_serves_repeats_and_resumed_runs_without_http(chat_server, tmp_path):
    path = tmp_path / "judge.sqlite"
    chat_server.push(Reply('{"v": 1}'), Reply('{"v": 2}'))
    first = client_for(chat_server, cache_path=str(path))
    assert first.complete(ask("q")).value == {"v": 1}
    again = first.complete(ask("q"))
    assert again.ok and again.cache_hit and again.requests == 0 and again.value == {"v": 1}
    first.close()
    resumed = client_for(chat_server, cache_path=str(path))  # a new process would see the same file
    assert resumed.complete(ask("q")).cache_hit
    assert len(chat_server.requests) == 1
    other_model = client_for(chat_server, cache_path=str(path), model="another-judge")
    assert not other_model.complete(ask("q")).cache_hit and len(chat_server.requests) == 2
    # a cached reply the validator now rejects is asked again, not trusted
    chat_server.push(Reply('{"v": 3, "checked": true}'))

    def stricter(text):
        data = parse_json_object(text)
        if "checked" not in data:
            raise InvalidReply("not checked")
        return data

    out = resumed.complete(ask("q", validate=stricter))
    assert out.ok and not out.cache_hit and out.value["v"] == 3


def test_concurrency_limit_is_respected(chat_server):
    chat_server.responder = lambda body: Reply('{"v": 1}', delay_s=0.25)
    client = client_for(chat_server, max_concurrency=2)
    outs = client.complete_many([ask(f"q{i}") for i in range(6)])
    assert all(o.ok for o in outs)
    assert chat_server.max_in_flight == 2


def test_concurrency_limit_holds_across_threads(chat_server):
    chat_server.responder = lambda body: Reply('{"v": 1}', delay_s=0.15)
    client = client_for(chat_server, max_concurrency=3)
    threads = [threading.Thread(target=client.complete_many, args=([ask(f"{t}-{i}") for i in range(3)],))
               for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(chat_server.requests) == 9 and chat_server.max_in_flight == 3


def test_identical_requests_in_a_batch_are_sent_once(chat_server):
    chat_server.responder = lambda body: Reply(json.dumps({"echo": last_user_message(body)}))
    outs = client_for(chat_server).complete_many([ask("a"), ask("b"), ask("a"), ask("a")])
    assert [o.value["echo"] for o in outs] == ["a", "b", "a", "a"]
    assert len(chat_server.requests) == 2
    assert [o.cache_hit for o in outs] == [False, False, True, True]


def test_circuit_breaker_fails_fast_during_an_outage(chat_server):
    chat_server.responder = lambda body: Status(503, "down")
    client = client_for(chat_server, max_retries=0, breaker_after=2, breaker_cooldown_s=0.3)
    assert [client.complete(ask(str(i))).error_kind for i in range(2)] == ["server", "server"]
    fast = client.complete(ask("x"))
    assert fast.error_kind == "circuit_open" and fast.requests == 0 and len(chat_server.requests) == 2
    time.sleep(0.35)
    chat_server.responder = lambda body: Reply('{"back": 1}')
    assert client.complete(ask("y")).ok


def test_rate_limiter_keeps_every_window_under_the_limit():
    limiter = RateLimiter(3, period_s=0.3)
    stamps = []
    for _ in range(7):
        limiter.acquire()
        stamps.append(time.monotonic())
    for i in range(len(stamps)):
        in_window = [t for t in stamps if stamps[i] <= t < stamps[i] + 0.3 - 1e-3]
        assert len(in_window) <= 3
    assert stamps[3] - stamps[0] >= 0.3 - 1e-3 and stamps[6] - stamps[3] >= 0.3 - 1e-3


def test_requests_per_minute_paces_the_client(chat_server):
    chat_server.responder = lambda body: Reply('{"v": 1}')
    client = client_for(chat_server, requests_per_minute=1000)
    client._rate = RateLimiter(2, period_s=0.25)  # the same limiter, on a short window for the test
    start = time.monotonic()
    assert all(o.ok for o in client.complete_many([ask(str(i)) for i in range(5)]))
    assert time.monotonic() - start >= 0.5 - 1e-2  # 5 requests, 2 per 0.25 s: at least 2 full windows


def test_backoff_grows_caps_and_jitters():
    rng = random.Random(0)
    plain = [backoff_delay(k, initial=1, multiplier=2, cap=10, jitter=0) for k in range(6)]
    assert plain == [1, 2, 4, 8, 10, 10]
    for k in range(6):
        d = backoff_delay(k, initial=1, multiplier=2, cap=10, jitter=0.5, rng=rng)
        assert 0.5 * plain[k] <= d <= plain[k]
    assert backoff_delay(0, initial=0.01, multiplier=2, cap=5, jitter=0, retry_after=3) == 3
    assert backoff_delay(0, initial=0.01, multiplier=2, cap=5, jitter=0, retry_after=60) == 5


def test_breaker_disabled_with_zero():
    b = CircuitBreaker(0, 10)
    for _ in range(5):
        b.call_failed()
    assert b.admit() == "pass" and not b.is_open and b.next_probe_in() is None


def test_config_errors_name_the_setting(monkeypatch):
    monkeypatch.delenv("POLYEPO_JUDGE_MODEL", raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ValueError, match="model"):
        JudgeConfig(base_url="http://127.0.0.1:1/v1").resolved_model()
    with pytest.raises(ValueError, match=r"\$MY_KEY"):
        JudgeConfig(base_url="https://judge.example/v1", api_key_env="MY_KEY").resolved_api_key()
    assert JudgeConfig(base_url="http://localhost:8000/v1", api_key_env="MY_KEY").resolved_api_key() == "EMPTY"
    monkeypatch.setenv("MY_KEY", "sk-test")
    assert JudgeConfig(base_url="https://judge.example/v1", api_key_env="MY_KEY").resolved_api_key() == "sk-test"
    with pytest.raises(ValueError, match="json_mode must be one of auto, on, off"):
        JudgeConfig(json_mode="yes")
    with pytest.raises(ValueError, match="max_concurrency"):
        JudgeConfig(max_concurrency=0)
    cfg, rest = JudgeConfig.split({"model": "m", "prompt": "code"})
    assert cfg.model == "m" and rest == {"prompt": "code"}


def test_failure_policy_parsing():
    assert FailurePolicy.parse("raise").action == "raise" and FailurePolicy.parse("stop").action == "raise"
    p = FailurePolicy.parse("zero_diversity", neutral_name="zero_diversity")
    assert p.action == "neutral" and p.label == "zero_diversity"
    p = FailurePolicy.parse("fallback:python_ast")
    assert (p.action, p.fallback, p.label) == ("fallback", "python_ast", "fallback:python_ast")
    for bad in ("all_distinct", "fallback:", ""):
        with pytest.raises(ValueError, match="on_failure must be one of 'wait'"):
            FailurePolicy.parse(bad)


def test_parse_json_object_repairs_wrappers():
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object('Here:\n```json\n{"a": 2}\n```\nDone.') == {"a": 2}
    assert parse_json_object('The result is {"a": 3} as requested.') == {"a": 3}
    for bad, why in [("", "empty"), ("[1, 2]", "JSON list"), ('{"a": 1', "not valid JSON"), ("no json", "no JSON")]:
        with pytest.raises(InvalidReply, match=why):
            parse_json_object(bad)


def test_server_binds_loopback_only(chat_server):
    assert chat_server.base_url.startswith("http://127.0.0.1:")
