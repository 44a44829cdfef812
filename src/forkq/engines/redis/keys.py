"""Every Redis key forkq uses, in one place. `prefix` defaults to "forkq" (URL `?prefix=`).

Per queue Q (all share the hash tag {prefix:Q}, so one queue's keys live in one Cluster slot
and its Lua scripts touch a single slot):

    {prefix:Q}:b0 .. b3   streams, one per priority band: 0-2, 3-5, 6-8, 9 (b3 runs first);
                          consumer group "forkq"; entry fields b = message body,
                          d = times started before, p = priority (0-9); a delivery's
                          receipt is "<band>-<entry id>" (`Receipt`): ids are never reused
    {prefix:Q}:delayed    sorted set of messages not yet due; score = due time in ms,
                          member = "<nonce>|<priority>|<d>|<body>"
    {prefix:Q}:dead       stream of dead letters; fields b = body, r = reason,
                          t = time (ms), p = priority; settle.lua adds to it, and fetch.lua
                          moves there what it cannot read (a delayed member not of the form
                          above, a stream entry without a body)
    {prefix:Q}:recovering set (NX, expiry lease_ttl / 4) by the one consumer that looks for
                          dead workers' entries of Q in this period
    {prefix:Q}:workers    sorted set of the workers that consume Q: member = worker id, score =
                          its latest heartbeat (ms); each beat drops members a day old and
                          keeps the key a day

Per prefix:

    prefix:queues         set of every queue name used, so that releases and dead-letter
                          listings never scan the keyspace

Per worker W:

    prefix:worker:W       exists while W is alive: its master sets it every lease_ttl / 3
                          with an expiry of lease_ttl

Per task T (result backend; both keys share the hash tag {prefix:T}):

    {prefix:T}:result     "<state>\\n<record>", expires after the result TTL
    {prefix:T}:ready      a list that receives one element when T reaches a ready state, so
                          waiters block on BLPOP instead of polling

Per chord C (result backend; both keys share the hash tag {prefix:chord:C}, so that vote.lua
touches one slot for the count):

    {prefix:chord:C}:members  set of the header members whose success is counted (task ids)
    {prefix:chord:C}:state    hash: firing = the member whose vote fired, done = "1" once its
                              messages are published; both keys expire the chord's TTL after
                              its latest vote (`ChordVote`, vote.lua)

Per message M that a broker gave back without knowing whether it started (result backend):

    {prefix:D}:starts     D = a digest of M's bytes; a counter of M's starts as a returned
                          delivery, expiring a week after the last (`count_start`)
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

GROUP = "forkq"
BANDS = 4  # priorities 0-2, 3-5, 6-8 and 9


def band_of(priority: int) -> int:
    return min(BANDS - 1, max(0, int(priority)) // 3)


class QueueKeys(msgspec.Struct, frozen=True):
    prefix: str
    queue: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.queue}}}"

    def band(self, band: int) -> str:
        return f"{self.tag}:b{band}"

    @property
    def bands_high_first(self) -> list[str]:
        return [self.band(b) for b in reversed(range(BANDS))]

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def recovering(self) -> str:
        return f"{self.tag}:recovering"

    @property
    def workers(self) -> str:
        return f"{self.tag}:workers"


class Receipt(msgspec.Struct, frozen=True):
    """A delivery's handle: the band stream of its queue and its entry id there, written
    "<band>-<entry id>" (`Delivery.receipt`). Built and read here only; release.lua matches
    the running receipts it is given against the same text."""

    band: int
    entry_id: str

    @classmethod
    def of(cls, text: str) -> Receipt:
        band, entry_id = text.split("-", 1)
        return cls(int(band), entry_id)

    @staticmethod
    def text(band: int, entry_id: str) -> str:
        """The receipt's text, built without the value (a fetch builds one per delivery)."""
        return f"{band}-{entry_id}"

    @staticmethod
    def flat(texts: Iterable[str]) -> list[str]:
        """Receipts as the fetch script takes its acks, read without a value each (a batch of
        acks is read at every fetch): band, entry id, band, entry id, ..."""
        return [part for text in texts for part in text.split("-", 1)]

    def __str__(self) -> str:
        return self.text(self.band, self.entry_id)


def queues_key(prefix: str) -> str:
    return f"{prefix}:queues"


def worker_key(prefix: str, worker: str) -> str:
    return f"{prefix}:worker:{worker}"


def result_key(prefix: str, task_id: str) -> str:
    return f"{{{prefix}:{task_id}}}:result"


def ready_key(prefix: str, task_id: str) -> str:
    return f"{{{prefix}:{task_id}}}:ready"


def starts_key(prefix: str, digest: str) -> str:
    return f"{{{prefix}:{digest}}}:starts"


def chord_keys(prefix: str, chord: str) -> list[str]:
    """vote.lua's KEYS[1] and KEYS[2]: the chord's members and state."""
    tag = f"{{{prefix}:chord:{chord}}}"
    return [f"{tag}:members", f"{tag}:state"]


def delayed_member(nonce: bytes, priority: int, starts: int, body: bytes) -> bytes:
    """A member of a queue's delayed set, "<nonce>|<priority>|<d>|<body>" (vote.lua and
    settle.lua build the same)."""
    return b"%s|%d|%d|%s" % (nonce, priority, starts, body)
