"""Stand-ins for remote services, on loopback: try and test judge configurations offline.

:class:`ChatServer` (``server.py``) is a real OpenAI-compatible HTTP server on 127.0.0.1;
:class:`StandInJudge` (``judge.py``) answers polyepo's own clustering and rubric prompts with
offline backends (``polyepo judge-standin``); :class:`Outage` (``outage.py``) takes either down
for a while, mid-run. They sit above clustering and rewards, whose prompts and backends they use.
"""

from .actions import Action, Raw, Reply, Status
from .outage import Outage
from .server import ChatServer, fast_options, last_user_message

__all__ = ["Action", "ChatServer", "Outage", "Raw", "Reply", "Status", "fast_options", "last_user_message"]
