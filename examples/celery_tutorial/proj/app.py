"""The project's app: the module Celery's tutorial calls `proj/celery.py`.

It names no broker: `FORKQ_BROKER_URL` picks one when the app is created (unset, the SQLite
file ./forkq.sqlite3), so the same code runs on SQLite, Redis or RabbitMQ.
"""

from __future__ import annotations

from forkq import Forkq

app = Forkq("proj", result_ttl=3600)  # results readable for an hour (Celery: result_expires)
