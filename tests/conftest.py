"""Shared fixtures: a private model cache, a small warm-started toy model, and a scripted
OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polyepo.standin import ChatServer


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A private POLYEPO_CACHE for the whole test session (nothing touches the user's cache)."""
    path = tmp_path_factory.mktemp("polyepo-cache")
    os.environ["POLYEPO_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def toy_base(model_cache, tmp_path_factory) -> Path:
    """A quickly warm-started toy model (smaller recipe than the bundled one: ~5 s)."""
    pytest.importorskip("trl")
    from polyepo.models.warmstart import WarmstartConfig, warmstart_toy_paths

    out = tmp_path_factory.mktemp("toy-base")
    return warmstart_toy_paths(WarmstartConfig(examples=1500, epochs=2.0), out)


@pytest.fixture
def chat_server():
    """A fresh loopback chat-completions server; script it with ``push`` or a responder."""
    with ChatServer() as server:
        yield server
