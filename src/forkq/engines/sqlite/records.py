"""The result backend's writes and chord counts, on whichever connection the caller gives: the
backend's own, or the broker's when results and messages share one file, so that a finish's
writes, its chord vote, the messages it publishes and its ack commit in one transaction.

Chord tables, made on first use (as forkq_starts)::

    forkq_chords(chord PRIMARY KEY, members, firing, done, expires_at)
        members      how many distinct members' successes are counted
        firing       the member whose vote fired; NULL until one does
        done         1 once the fired vote's messages are published (`fired`)
    forkq_chord_members(chord, member, PRIMARY KEY (chord, member))   each success once

A chord whose expires_at has passed reads as never voted on: its rows are deleted by its next
vote, or in passing with the expired results (at most once a minute per connection).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from forkq.engines.contract import ChordVote, Fence, ResultWrite

_CHORDS = """
CREATE TABLE IF NOT EXISTS forkq_chords (
    chord TEXT PRIMARY KEY,
    members INTEGER NOT NULL,
    firing TEXT,
    done INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_MEMBERS = """
CREATE TABLE IF NOT EXISTS forkq_chord_members (
    chord TEXT NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (chord, member)
) WITHOUT ROWID
"""
_STORE = "INSERT OR REPLACE INTO forkq_results VALUES (?, ?, ?, ?)"

# Each record's last run past a first (`ResultBackend.store`: a write of a run of the same
# sending with a lower attempt is refused). A first run writes no row here: most cost none.
FENCES = """
CREATE TABLE IF NOT EXISTS forkq_fences (
    task_id TEXT PRIMARY KEY,
    sending TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_STORE_FENCED = """
INSERT OR REPLACE INTO forkq_results SELECT :task_id, :state, :payload, :until
WHERE NOT EXISTS (SELECT 1 FROM forkq_fences
                  WHERE task_id = :task_id AND sending = :sending AND attempt > :attempt
                  AND expires_at >= :now)
"""
_FENCE = """
INSERT INTO forkq_fences VALUES (:task_id, :sending, :attempt, :until)
ON CONFLICT (task_id) DO UPDATE SET sending = :sending, attempt = :attempt, expires_at = :until
"""
_UNFENCE = "DELETE FROM forkq_fences WHERE task_id = ?"

# The chord's row after the vote: `:added` members more (0 or 1), and the vote's member as the
# firing one when the vote is due (a failure, or the count reaching the size), no other member
# fired before and the chord is not done. Returns whether this vote fires: the chord is not
# done and its firing member is this one (also when it fired before and is cast again).
_COUNT = """
INSERT INTO forkq_chords (chord, members, firing, done, expires_at)
VALUES (:chord, :added, CASE WHEN :failed OR :added >= :size THEN :member END, 0, :until)
ON CONFLICT (chord) DO UPDATE SET
    members = members + :added,
    firing = CASE WHEN done = 0 AND (firing IS NULL OR firing = :member)
                    AND (:failed OR members + :added >= :size) THEN :member ELSE firing END,
    expires_at = :until
RETURNING done = 0 AND firing IS NOT NULL AND firing = :member
"""

CLEANUP_EVERY = 60.0  # seconds between deletions of expired rows, per connection


class Records:
    """The statements of one connection, run inside its caller's transaction where there
    is one (the broker's session) or in autocommit (the backend's single writes)."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self._conn = conn
        self._has_chords = False
        self._next_cleanup = now + CLEANUP_EVERY

    def store(self, writes: Sequence[ResultWrite], now: float) -> None:
        """The writes, each run's fenced (`ResultBackend.store`); the forkq_fences table made
        already (`FENCES`, by the backend's connection). In the caller's transaction when
        there are several statements."""
        unfenced = [w for w in writes if w.fence is None]
        if unfenced:
            rows = [(w.task_id, w.state, w.payload, now + w.ttl) for w in unfenced]
            self._conn.executemany(_STORE, rows)
            self._conn.executemany(_UNFENCE, [(w.task_id,) for w in unfenced])
        for w in writes:
            if w.fence is not None:
                self._store_fenced(w, w.fence, now)
        self.clean(now)

    def _store_fenced(self, w: ResultWrite, fence: Fence, now: float) -> None:
        row = {"task_id": w.task_id, "state": w.state, "payload": w.payload,
               "until": now + w.ttl, "sending": fence.sending, "attempt": fence.attempt,
               "now": now}  # fmt: skip
        written = self._conn.execute(_STORE_FENCED, row).rowcount > 0
        if written and fence.attempt > 1:
            self._conn.execute(_FENCE, row)

    def clean(self, now: float) -> None:
        """Delete the expired results (and chords), if the last time was a minute ago."""
        if now < self._next_cleanup:
            return
        self._next_cleanup = now + CLEANUP_EVERY
        self._conn.execute("DELETE FROM forkq_results WHERE expires_at < ?", (now,))
        self._conn.execute("DELETE FROM forkq_fences WHERE expires_at < ?", (now,))
        if self._has_chords:
            self._conn.execute(
                """DELETE FROM forkq_chord_members WHERE chord IN
                   (SELECT chord FROM forkq_chords WHERE expires_at < ?)""",
                (now,),
            )
            self._conn.execute("DELETE FROM forkq_chords WHERE expires_at < ?", (now,))

    def make_chord_tables(self) -> None:
        """Before the transaction of a first vote (so that a rollback cannot undo them while
        this connection takes them for made); once per connection."""
        if not self._has_chords:
            self._conn.execute(_CHORDS)
            self._conn.execute(_MEMBERS)
            self._has_chords = True

    def vote(self, vote: ChordVote, now: float) -> bool:
        """Count `vote` (`ChordVote`): whether it fires. In the caller's transaction, after
        `make_chord_tables`."""
        conn, chord = self._conn, vote.chord
        expired = conn.execute(
            "DELETE FROM forkq_chords WHERE chord = ? AND expires_at < ? RETURNING 1", (chord, now)
        ).fetchall()
        if expired:
            conn.execute("DELETE FROM forkq_chord_members WHERE chord = ?", (chord,))
        added = 0
        if not vote.failed:
            added = conn.execute(
                "INSERT OR IGNORE INTO forkq_chord_members VALUES (?, ?)", (chord, vote.member)
            ).rowcount
        params = {
            "chord": chord,
            "member": vote.member,
            "added": added,
            "failed": int(vote.failed),
            "size": vote.size,
            "until": now + vote.ttl,
        }
        row = conn.execute(_COUNT, params).fetchone()
        return bool(row[0])

    def fired(self, vote: ChordVote) -> None:
        """The fired vote's messages are published: no vote of the chord fires again."""
        self.make_chord_tables()
        self._conn.execute("UPDATE forkq_chords SET done = 1 WHERE chord = ?", (vote.chord,))
