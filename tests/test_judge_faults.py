"""The judge client against injected faults: the real openai client over HTTP to tests/judge_faults.py.

Breaker (what counts, half-open probing), Retry-After in both forms, the whole-request
deadline, bounded re-asks, JSON mode, and items that fail alone without holding a batch.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time

import pytest

from judge_faults import Drop, FaultServer, Raw, Reply, Status, Trickle
from polyepo.judge import JudgeClient, JudgeConfig, JudgeRequest, parse_json_object
from polyepo.judge.limits import CircuitBreaker, parse_retry_after

pytest.importorskip("openai")


def client(server: FaultServer, **overrides) -> JudgeClient:
    return JudgeClient(JudgeConfig(**server.options(**overrides)), namespace="faults")


def ask(text: str = "q") -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": text}], validate=parse_json_object)


# -- the breaker counts server-side failures only ----------------------------------------------


def test_client_errors_and_429s_never_open_the_breaker():
    too_long = Status(400, "This model's maximum context length is 8192 tokens (json)")

    def handler(seen):
        if "long" in seen.user:
            return too_long
        if "busy" in seen.user:
            return Status(429, "slow down")
        return Reply('{"ok": 1}')

    with FaultServer(handler) as server:
        c = client(server, breaker_after=2, max_retries=0)
        outs = c.complete_many([ask(f"long {i}") for i in range(8)] + [ask(f"busy {i}") for i in range(4)])
        assert [o.error_kind for o in outs] == ["client"] * 8 + ["rate_limit"] * 4
        healthy = c.complete_many([ask(f"fine {i}") for i in range(52)])
        assert all(o.ok for o in healthy), "4xx and 429 replies must not open the breaker"
        assert c.json_mode, "a 400 that mentions json but not response_format keeps JSON mode on"


@pytest.mark.parametrize("fault, kind", [(Status(503, "down"), "server"), (Drop(), "connection"),
                                         (Drop(delay_s=1.0), "timeout")])
def test_server_side_failures_open_the_breaker(fault, kind):
    with FaultServer() as server:
        server.fault = fault
        c = client(server, breaker_after=2, max_retries=0, breaker_cooldown_s=30, timeout_s=0.4)
        assert [c.complete(ask(str(i))).error_kind for i in range(2)] == [kind, kind]
        fast = c.complete(ask("x"))
        assert fast.error_kind == "circuit_open" and fast.requests == 0 and len(server.requests) == 2


def test_half_open_breaker_lets_exactly_one_probe_through():
    with FaultServer() as server:
        server.fault = Status(503, "down")
        c = client(server, breaker_after=1, max_retries=0, breaker_cooldown_s=0.3)
        assert c.complete(ask("open it")).error_kind == "server"
        time.sleep(0.35)
        server.fault = Reply('{"back": 1}', delay_s=1.0)  # the probe takes a while to answer
        outs = c.complete_many([ask(f"after {i}") for i in range(12)])
        probes = [o for o in outs if o.requests]
        assert len(probes) == 1 and probes[0].ok, "exactly one caller probes; the others fail fast"
        assert sum(o.error_kind == "circuit_open" for o in outs) == 11
        assert len(server.requests) == 2
        assert c.complete(ask("closed again")).ok  # the probe's answer closed the breaker


def test_waiting_callers_wait_for_the_one_probe():
    with FaultServer() as server:
        server.fault = Status(503, "down")
        c = client(server, breaker_after=1, max_retries=0, breaker_cooldown_s=0.3)
        c.complete(ask("open it"))
        server.fault = Reply('{"back": 1}', delay_s=0.3)
        start = time.monotonic()
        outs = c.complete_many([ask(f"w{i}") for i in range(8)], wait=True)
        assert all(o.ok for o in outs)
        during_probe = [s for s in server.requests[1:] if s.at < server.requests[1].at + 0.25]
        assert len(during_probe) == 1, "while the probe is in flight nobody else sends"
        assert time.monotonic() - start < 5.0


def test_failed_probe_reopens_for_a_whole_cooldown():
    with FaultServer() as server:
        server.fault = Status(500, "still down")
        c = client(server, breaker_after=1, max_retries=0, breaker_cooldown_s=0.25)
        c.complete(ask("a"))
        stop = time.monotonic() + 1.0
        while time.monotonic() < stop:  # callers hammer the client for a second
            c.complete(ask("b"))
            time.sleep(0.01)
        # one request, then at most one probe per cool-down
        assert 2 <= len(server.requests) <= 1 + 1.0 / 0.25 + 1


# -- Retry-After, the whole-request deadline ---------------------------------------------------


def test_retry_after_as_seconds_and_as_an_http_date():
    with FaultServer() as server:
        c = client(server, backoff_max_s=5.0, max_retries=2)
        for header in ("1.2", "date"):
            if header == "date":  # whole seconds: 2 s ahead is at least 1 s of wait
                header = email.utils.formatdate(time.time() + 2.0, usegmt=True)
            server.requests.clear()
            answers = iter([Status(503, "busy", headers={"Retry-After": header}), Reply('{"ok": 1}')])
            server.handler = lambda seen, answers=answers: next(answers)
            out = c.complete(ask(header))
            gap = server.requests[1].at - server.requests[0].at
            assert out.ok and out.retries == 1
            assert gap >= 1.0, f"Retry-After {header!r} was not honoured (waited {gap:.2f} s)"


def test_parse_retry_after_forms():
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    for junk in ("soon", "-5", "nan", "", "Mon, 99 Foo 2024"):
        assert parse_retry_after({"retry-after": junk}) is None
    assert parse_retry_after(None) is None


def test_timeout_is_a_deadline_for_the_whole_request():
    with FaultServer() as server:
        server.fault = Trickle('{"slow": "' + "x" * 200 + '"}', every_s=0.1)  # ~30 s to send it all
        c = client(server, timeout_s=1.0, max_retries=0)
        start = time.monotonic()
        out = c.complete(ask())
        took = time.monotonic() - start
        assert not out.ok and out.error_kind == "timeout" and "timeout_s" in out.error
        assert took < 2.5, f"a trickling reply kept the request alive {took:.1f} s with timeout_s=1"
        time.sleep(0.3)
        assert server.aborted == 1, "the client must hang up at the deadline"


# -- re-asks, JSON mode, several JSON blocks ------------------------------------------------------


def test_reasks_quote_a_bounded_excerpt():
    huge = "Let me think. " * 150_000  # ~2 MB of prose and no JSON
    with FaultServer(lambda seen: Reply(huge)) as server:
        c = client(server, max_reasks=2, reask_excerpt_chars=3000)
        out = c.complete(ask())
        assert not out.ok and out.error_kind == "invalid_reply" and out.reasks == 2
        sizes = [s.size for s in server.requests]
        assert sizes[1] < sizes[0] + 5000 and sizes[2] < sizes[0] + 10000, sizes
        quoted = server.requests[1].body["messages"][1]["content"]
        assert quoted.startswith("Let me think.") and "characters omitted" in quoted and len(quoted) < 3200


def test_only_a_400_about_response_format_turns_json_mode_off_and_says_so_once(caplog):
    def handler(seen):
        if "response_format" in seen.body:
            if "ctx" in seen.user:
                return Status(400, "Invalid JSON schema... prompt too long")
            return Status(400, "unsupported parameter", param="response_format", delay_s=0.1)
        return Reply('{"plain": 1}')

    with FaultServer(handler) as server:
        c = client(server, json_mode="auto", max_concurrency=8)
        out = c.complete(ask("ctx"))
        assert out.error_kind == "client" and c.json_mode
        with caplog.at_level(logging.INFO, logger="polyepo.judge"):
            outs = c.complete_many([ask(f"q{i}") for i in range(8)])  # 8 rejections in flight at once
        assert all(o.ok for o in outs) and not c.json_mode
        said = [r for r in caplog.records if "refused response_format" in r.message]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
        assert "response_format" not in server.requests[-1].body


def test_several_json_blocks_last_complete_one_or_a_reask():
    draft, final = '```json\n{"v": "draft"}\n```', '```json\n{"v": "final"}\n```'
    replies = iter([Reply(f"First try:\n{draft}\nOn reflection:\n{final}"),
                    Reply(f'{draft}\nCorrected:\n```json\n{{"v": "fin'),  # cut off: never the draft
                    Reply(final)])
    with FaultServer(lambda seen: next(replies)) as server:
        c = client(server)
        assert c.complete(ask("one")).value == {"v": "final"}
        out = c.complete(ask("two"))
        assert out.ok and out.value == {"v": "final"} and out.reasks == 1
        assert "never closed" in server.requests[2].user


# -- one item does not hold the others -------------------------------------------------------------


def test_a_persistently_failing_item_does_not_hold_the_batch_through_its_backoff():
    def handler(seen):
        return Status(500, "this prompt crashes the server") if "poison" in seen.user else Reply('{"ok": 1}', 0.02)

    with FaultServer(handler) as server:
        # a full exponential backoff would be 0.1 + 0.4 + 1.6 + 6.4 s = 8.5 s
        c = client(server, max_retries=4, backoff_initial_s=0.1, backoff_multiplier=4.0, backoff_max_s=30.0)
        start = time.monotonic()
        outs = c.complete_many([ask(f"fine {i}") for i in range(6)] + [ask("poison")])
        took = time.monotonic() - start
        assert all(o.ok for o in outs[:6]) and outs[6].error_kind == "server" and outs[6].retries == 4
        assert "answers other requests" in outs[6].error
        assert took < 3.0, f"one failing item held the batch {took:.1f} s"


def test_a_slow_item_holds_only_its_own_slot():
    def handler(seen):
        return Drop(delay_s=1.5) if "slow" in seen.user else Reply('{"ok": 1}', 0.05)

    with FaultServer(handler) as server:
        c = client(server, max_concurrency=2, timeout_s=1.0, max_retries=0)
        done_at: dict[str, float] = {}
        start = time.monotonic()

        def run(name):
            c.complete(ask(name))
            done_at[name] = time.monotonic() - start

        threads = [threading.Thread(target=run, args=(n,)) for n in ["slow", *[f"fast {i}" for i in range(8)]]]
        for t in threads:
            t.start()
            time.sleep(0.01)
        for t in threads:
            t.join()
        fast = max(v for k, v in done_at.items() if k != "slow")
        assert fast < done_at["slow"] and fast < 1.2, done_at  # all fast ones went through the other slot
        assert 0.95 < done_at["slow"] < 2.5


def test_unreadable_bodies_are_retried_and_do_not_count_as_an_outage():
    answers = iter([Raw(b"<html>502 Bad Gateway</html>", content_type="text/html"), Raw(b'{"choices": [tr'),
                    Reply('{"ok": 1}')])
    with FaultServer(lambda seen: next(answers)) as server:
        c = client(server, breaker_after=1, max_retries=3)
        out = c.complete(ask())
        assert out.ok and out.retries == 2 and not c._breaker.is_open


def test_breaker_unit_half_open_admits_one():
    b = CircuitBreaker(2, 0.05)
    b.call_failed()
    assert b.admit() == "pass"
    b.call_failed()
    assert b.admit() is None and b.is_open
    time.sleep(0.06)
    assert [b.admit() for _ in range(5)] == ["probe", None, None, None, None]
    b.probe_failed()
    assert b.admit() is None
    time.sleep(0.06)
    assert b.admit() == "probe"
    b.answered()
    assert b.admit() == "pass" and not b.is_open
