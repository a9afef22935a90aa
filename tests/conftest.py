"""Shared fixtures: a scripted OpenAI-compatible server on 127.0.0.1 and fast judge settings."""

from __future__ import annotations

import pytest

from polyepo.judge.testing import ChatServer


@pytest.fixture
def chat_server():
    """A fresh loopback chat-completions server; script it with ``push`` or a responder."""
    with ChatServer() as server:
        yield server


def fast_judge(server: ChatServer, **overrides) -> dict:
    """Judge options that point at ``server`` with tiny backoffs and no persistent cache."""
    options = dict(model="test-judge", base_url=server.base_url, cache_path=None, backoff_initial_s=0.01,
                   backoff_max_s=0.05, max_retries=2, timeout_s=5.0, breaker_after=0)
    options.update(overrides)
    return options
