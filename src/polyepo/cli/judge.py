"""``polyepo judge-standin``: an offline stand-in for the LLM judge, served on loopback."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, parse_options, user_errors


@app.command("judge-standin")
@user_errors
def judge_standin(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port; the address is printed).")] = 8011,
    clusterer: Annotated[Optional[str], typer.Option("--clusterer", "-b", help="Offline clusterer answering every clustering request (default: python_ast for the code prompt, answer key=math for the math prompt).")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Clusterer option key=value (repeat).")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option(help="Your own prompt template as KIND=FILE, KIND cluster, build or score (repeat); the built-in prompts are always recognised.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per request.")] = False,
    outage: Annotated[Optional[str], typer.Option(help="Rehearse a judge outage: after AFTER requests, answer HTTP 503 for SECONDS seconds, then answer again (AFTER:SECONDS, e.g. 96:20).")] = None,
) -> None:
    """Serve an OpenAI-compatible endpoint that answers polyepo's judge prompts offline (docs/clustering.md, docs/rubric.md)."""
    from ..standin import ChatServer, Outage
    from ..standin.judge import StandInJudge
    from ..standin.outage import parse_outage

    prompts: dict[str, list[str]] = {}
    for item in prompt or []:
        kind, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--prompt expects KIND=FILE (KIND cluster, build or score), got {item!r}")
        prompts.setdefault(kind.strip(), []).append(path.strip())
    judge = StandInJudge(clusterer, parse_options(option or []) or None, prompts)
    if not quiet:
        judge.log = lambda line: err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    responder = judge
    if outage is not None:
        after, seconds = parse_outage(outage)
        responder = Outage(judge, after=after, seconds=seconds)
        responder.log = lambda line: print(f"stand-in judge {line}", file=sys.stderr, flush=True)
    server = ChatServer(responder, port=port, keep_requests=False).start()
    print(f"stand-in judge serving {server.base_url} (any model name, no key); Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as cleanly as on Ctrl-C
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(judge.counts.items())) or "none"
        print(f"stand-in judge stopped; requests answered: {counts}", file=sys.stderr, flush=True)
