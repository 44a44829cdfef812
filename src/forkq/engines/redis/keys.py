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
    {prefix:Q}:schedules  hash of the periodic schedules whose fires go to Q: field = schedule
                          name, value = "<due ms> <fired at ms> <task id>", its newest due time
                          recorded (task id "": a starting point, never fired); fire.lua
                          records a fire and adds its message to Q's band stream in one call,
                          only if its due time is newer (schedules.py)

Per prefix:

    prefix:queues         set of every queue name used, so that releases and dead-letter
                          listings never scan the keyspace

Per lease L (`prefix:lease:scheduler:<app>`: the periodic schedulers' leader):

    prefix:lease:L        the holder's id, expiring with the lease (SET NX PX): taken and
                          renewed by lease_hold.lua, given up by lease_release.lua

Per worker W:

    prefix:worker:W       exists while W is alive: its master sets it every lease_ttl / 3
                          with an expiry of lease_ttl

Control (`forkq.engines.redis.control`):

    prefix:control:requests     pub/sub channel: every agent subscribes, clients publish
    prefix:control:reply:<hex>  pub/sub channel: one client's inbox
    prefix:control:members      sorted set: member = "<worker name> <worker id>", score = its
                                agent's latest announcement (ms); ZREM when it withdraws;
                                each announcement drops members older than PRESENCE_KEPT and
                                keeps the key that long

Per task T (result backend; its keys share the hash tag {prefix:T}):

    {prefix:T}:result     "<state>\\n<record>", expires after the result TTL
    {prefix:T}:ready      a list that receives one element when T reaches a ready state, so
                          waiters block on BLPOP instead of polling
    {prefix:T}:fence      "<attempt> <sending>" of the last run past a first that wrote its
                          result (store.lua refuses a lower attempt of the same sending),
                          expiring with the result

Per unique lock K (result backend; `ResultBackend.lock`):

    {prefix:lock:K}:lock  the task id holding K, expiring when the lock's time is up

Per rate-limited task T, bucket K ("" for the task's one bucket) and holder H (a task id)
(result backend; `ResultBackend.take_rate`, rate.lua; all share the hash tag {prefix:rate:T}):

    {prefix:rate:T}:override      the interval in force for T (microseconds), while an
                                  override is set (`set_rate_override`); no expiry
    {prefix:rate:T}:bucket:K      hash: tat = the next free start slot, last = the latest
                                  start (Unix microseconds, server time); expires once idle
    {prefix:rate:T}:held:H:K      H's reserved slot (microseconds), expiring a while after it

Per concurrency-limited task T, bucket K and holder H (result backend; `take_slot`,
slots.lua; all share the hash tag {prefix:slots:T}):

    {prefix:slots:T}:held:K       sorted set: member = a holder, score = the end of its lease
                                  (microseconds); expires with the latest lease
    {prefix:slots:T}:backoff:H:K  H's latest back-off (microseconds), forgotten a minute on

Per chord C (result backend; both keys share the hash tag {prefix:chord:C}, so that vote.lua
touches one slot for the count):

    {prefix:chord:C}:members  set of the header members whose success is counted (task ids)
    {prefix:chord:C}:state    hash: firing = the member whose vote fired, done = "1" once its
                              messages are published; both keys expire the chord's TTL after
                              its latest vote (`ChordVote`, vote.lua)

Revoked task ids (result backend; `ResultBackend.revoke`, revoke.lua, revocations.lua; all
share the hash tag {prefix:revoked}; the two sets expire with the latest revocation, the
sequence and its epoch never):

    {prefix:revoked}:order    sorted set: member = a revoked task id, score = the number of
                              its revocation in the sequence below (revoked again: renumbered)
    {prefix:revoked}:until    sorted set: member = a revoked task id, score = when its
                              revocation expires (Unix ms)
    {prefix:revoked}:seq      the latest number given (INCR): readers' cursor
    {prefix:revoked}:epoch    a random token set when the sequence gets its number 1: a
                              reader that read another one reads everything again

Events (result backend, or the server `events_url` names; `ResultBackend.add_events`,
`events.py`):

    prefix:events         stream of task and worker events: entry field b = an event's
                          bytes (`forkq.events.codec`); each XADD trims it to about
                          `events_kept` entries (MAXLEN ~); no expiry

Per message M that a broker gave back without knowing whether it started (result backend):

    {prefix:D}:starts     D = a digest of M's bytes; a counter of M's starts as a returned
                          delivery, expiring a week after the last (`count_start`)
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from forkq.engines.contract.values import PRIORITY_BANDS, priority_band

GROUP = "forkq"
BANDS = len(PRIORITY_BANDS)  # a stream per band: priorities 0-2, 3-5, 6-8 and 9
band_of = priority_band


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

    @property
    def schedules(self) -> str:
        return f"{self.tag}:schedules"


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


def lease_key(prefix: str, lease: str) -> str:
    return f"{prefix}:lease:{lease}"


def control_key(prefix: str, part: str) -> str:
    """`prefix:control:<part>`: the channels and members of control."""
    return f"{prefix}:control:{part}"


def worker_key(prefix: str, worker: str) -> str:
    return f"{prefix}:worker:{worker}"


def result_key(prefix: str, task_id: str) -> str:
    return f"{{{prefix}:{task_id}}}:result"


def ready_key(prefix: str, task_id: str) -> str:
    return f"{{{prefix}:{task_id}}}:ready"


def fence_key(prefix: str, task_id: str) -> str:
    return f"{{{prefix}:{task_id}}}:fence"


def lock_key(prefix: str, key: str) -> str:
    return f"{{{prefix}:lock:{key}}}:lock"


def rate_keys(prefix: str, task: str, key: str, holder: str) -> list[str]:
    """rate.lua's KEYS: the task's override, the bucket, the holder's reservation."""
    tag = f"{{{prefix}:rate:{task}}}"
    return [f"{tag}:override", f"{tag}:bucket:{key}", f"{tag}:held:{holder}:{key}"]


def slot_keys(prefix: str, task: str, key: str, holder: str) -> list[str]:
    """slots.lua's KEYS: the bucket's held slots, the holder's back-off."""
    tag = f"{{{prefix}:slots:{task}}}"
    return [f"{tag}:held:{key}", f"{tag}:backoff:{holder}:{key}"]


def revoked_keys(prefix: str) -> list[str]:
    """revoke.lua's and revocations.lua's KEYS: the order, the expiries, the sequence and
    its epoch."""
    tag = f"{{{prefix}:revoked}}"
    return [f"{tag}:order", f"{tag}:until", f"{tag}:seq", f"{tag}:epoch"]


def events_key(prefix: str) -> str:
    return f"{prefix}:events"


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


def read_delayed_member(member: bytes) -> tuple[int, bytes] | None:
    """The priority and body of a member of a delayed set; None for one not of that form
    (anyone may write into Redis: fetch.lua dead-letters those when they come due)."""
    parts = member.split(b"|", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[3]
