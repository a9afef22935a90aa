"""Shared fixtures: a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import pytest

from polyepo.judge.testing import ChatServer


@pytest.fixture
def chat_server():
    """A fresh loopback chat-completions server; script it with ``push`` or a responder."""
    with ChatServer() as server:
        yield server
