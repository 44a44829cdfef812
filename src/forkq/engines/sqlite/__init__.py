"""The embedded SQLite engine, the default: queues, dead letters and results in one database
file, no server needed (`sqlite:///PATH`)."""

from forkq.engines.contract import Engine
from forkq.engines.sqlite.broker import SQLiteBroker
from forkq.engines.sqlite.results import SQLiteBackend

ENGINE = Engine("SQLite", SQLiteBroker, SQLiteBackend)

__all__ = ["ENGINE", "SQLiteBackend", "SQLiteBroker"]
