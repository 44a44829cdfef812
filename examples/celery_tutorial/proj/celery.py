"""The project's app, where Celery's tutorial keeps it: `forkq worker -A proj` finds it here,
and `include` names the modules whose tasks it registers.

It names no broker: `FORKQ_BROKER_URL` picks one when the app is created (unset, the SQLite
file ./forkq.sqlite3), so the same code runs on SQLite, Redis or RabbitMQ.
"""

from __future__ import annotations

from forkq import Forkq

app = Forkq("proj", include=["proj.tasks"], result_ttl=3600)  # results kept an hour
