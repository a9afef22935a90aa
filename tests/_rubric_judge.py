"""A scripted rubric judge for the loopback server, whose right answers are known.

Scoring: the judge reads the rubric ids from the request and gives item X the verdict
``met`` when the attempt contains the marker ``<X>``, ``partial`` for ``<X?>``, else
``missed``; the evidence is the marker itself (so it is a real quote). Building: it answers
with a fixed rubric (``BUILT``) and records nothing else.
"""

from __future__ import annotations

import json
import re

from polyepo.standin import Reply

BUILT = {"outcome": ["The final answer is 42."],
         "process": ["Splits the task into two halves.", "Adds the halves correctly."]}
_ITEM = re.compile(r"^([OP]\d+) \((outcome|process)\): ", re.M)
_ATTEMPT = re.compile(r"<attempt>\n(.*)\n</attempt>", re.S)


def message(body) -> str:
    return body["messages"][0]["content"]


def is_build(body) -> bool:
    return "<attempt>" not in message(body)


def rubric_ids(body) -> list[str]:
    text = message(body).split("## Rubric")[1].split("## Attempt")[0]
    return [m.group(1) for m in _ITEM.finditer(text)]


def attempt(body) -> str:
    return _ATTEMPT.search(message(body)).group(1)


def verdicts(body) -> dict:
    text = attempt(body)
    out = {}
    for i in rubric_ids(body):
        if f"<{i}>" in text:
            out[i] = {"verdict": "met", "evidence": f"<{i}>"}
        elif f"<{i}?>" in text:
            out[i] = {"verdict": "partial", "evidence": f"<{i}?>"}
        else:
            out[i] = {"verdict": "missed", "evidence": ""}
    return out


def judge(body) -> Reply:
    """The responder: builds answer BUILT, scores answer by markers."""
    if is_build(body):
        return Reply(json.dumps(BUILT))
    return Reply(json.dumps(verdicts(body)))


def score_requests(server) -> list[dict]:
    return [b for b in server.requests if not is_build(b)]


def build_requests(server) -> list[dict]:
    return [b for b in server.requests if is_build(b)]
