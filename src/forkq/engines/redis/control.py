"""Control on Redis (`forkq.engines.contract.control`): requests and replies over pub/sub,
membership in a sorted set (keys: `forkq.engines.redis.keys`, "Control").

    client: SUBSCRIBE P:control:reply:<hex> (once per channel, confirmed before the first
            request) ─► ZRANGEBYSCORE P:control:members ─► PUBLISH P:control:requests
    agent:  SUBSCRIBE P:control:requests (confirmed) ─► ZADD P:control:members ─► each
            request: PUBLISH its reply to the client's reply channel

Why pub/sub, not a stream: a control request is for the workers listening now, and only while
its client waits. Pub/sub hands it to them at once and keeps nothing, so a worker that was down
never runs a stale `shutdown` or `pool-shrink` when it comes back, and there is nothing to trim,
acknowledge or clean up after a client that died. A stream keeps requests for consumers to
find later: right for revocations (kept elsewhere, with a TTL), wrong for control.

Waiting: `PubSub.get_message(timeout)` polls its socket for the time given and reads only what
has arrived, so the client's read timeout (redis-py 8 reads with 5 s when the URL names none)
never cuts a wait short, unlike a blocking command (`longest_block`); a plain `redis://` URL
works (tests/engines/test_control_conformance.py waits past a 0.5 s socket_timeout).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from redis.client import PubSub

from forkq.engines.contract import PRESENCE_KEPT, ControlChannel, Member
from forkq.engines.redis.client import Client, errors_as
from forkq.engines.redis.keys import control_key
from forkq.exceptions import BrokerError, BrokerFull, BrokerUnavailable

SUBSCRIBED_WITHIN = 5.0  # seconds a subscription's confirmation may take


class RedisControl(ControlChannel):
    refresh_every = 10.0  # an announcement is one ZADD: cheap enough to keep `seen_at` fresh

    def __init__(self, client: Client, prefix: str, secret: str | None) -> None:
        super().__init__(secret)
        self._client = client
        self._requests_channel = control_key(prefix, "requests")
        self._replies_prefix = control_key(prefix, "reply:")
        self._members_key = control_key(prefix, "members")
        self._errors = errors_as(BrokerUnavailable, BrokerError, BrokerFull, "redis control")
        self._inbox_channel = ""
        self._inbox_sub: PubSub | None = None
        self._requests_sub: PubSub | None = None

    def _inbox(self) -> str:
        if self._inbox_sub is not None:  # kept from an earlier request: is it still there?
            try:
                with self._errors:
                    self._inbox_sub.ping()
                    self._await(self._inbox_sub, "pong")
            except BrokerUnavailable:  # dropped meanwhile (idle, a restart): subscribe anew
                _close(self._inbox_sub)
                self._inbox_sub = None
        if self._inbox_sub is None:
            channel = f"{self._replies_prefix}{uuid.uuid4().hex}"
            self._inbox_sub = self._subscribed(channel)
            self._inbox_channel = channel
        return self._inbox_channel

    def _send_request(self, raw: bytes) -> None:
        with self._errors:
            self._client.publish(self._requests_channel, raw)

    def _next_reply(self, timeout: float) -> bytes | None:
        assert self._inbox_sub is not None
        return self._next(self._inbox_sub, timeout)

    def _subscribe(self) -> None:
        if self._requests_sub is None:
            self._requests_sub = self._subscribed(self._requests_channel)

    def _next_request(self, timeout: float) -> bytes | None:
        self._subscribe()  # again, after a dropped connection
        assert self._requests_sub is not None
        try:
            return self._next(self._requests_sub, timeout)
        except BrokerUnavailable:  # the agent backs off, then subscribes anew
            _close(self._requests_sub)
            self._requests_sub = None
            raise

    def _send_reply(self, address: str, raw: bytes) -> None:
        if not address.startswith(self._replies_prefix):  # only a client's reply channel
            self._refuse(f"reply address {address[:100]!r} is no reply channel")
            return
        with self._errors:
            self._client.publish(address, raw)

    def _announce(self, member: Member) -> None:
        now_ms = int(member.seen_at * 1000)
        kept_ms = int(PRESENCE_KEPT * 1000)
        with self._errors:
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(self._members_key, {_entry(member): now_ms})
            pipe.zremrangebyscore(self._members_key, "-inf", now_ms - kept_ms)
            pipe.pexpire(self._members_key, kept_ms)
            pipe.execute()

    def _withdraw(self, member: Member) -> None:
        with self._errors:
            self._client.zrem(self._members_key, _entry(member))

    def _members(self, since: float) -> Iterable[Member]:
        with self._errors:
            found: Any = self._client.zrangebyscore(
                self._members_key, int(since * 1000), "+inf", withscores=True
            )
        for entry, ms in found:
            text = entry.decode(errors="replace") if isinstance(entry, bytes) else str(entry)
            name, _, worker_id = text.partition(" ")
            if name and worker_id:  # anything else is not an announcement: skipped
                yield Member(name, worker_id, float(ms) / 1000)

    def close(self) -> None:
        _close(self._inbox_sub)
        _close(self._requests_sub)
        self._inbox_sub = self._requests_sub = None

    def _subscribed(self, channel: str) -> PubSub:
        """A subscription to `channel` that the server has confirmed: a PUBLISH sent after
        this returns, on any connection, reaches it."""
        sub: PubSub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            with self._errors:
                sub.subscribe(channel)
                self._await(sub, "subscribe")
        except BaseException:
            sub.close()
            raise
        return sub

    def _await(self, sub: PubSub, kind: str) -> None:
        """Read the subscription's messages up to one of `kind` ("subscribe": the server
        confirmed it; "pong": the answer to a PING, which comes after the confirmation of a
        subscription redis-py renewed on a new connection). What comes before is dropped:
        replies to earlier requests."""
        deadline = time.monotonic() + SUBSCRIBED_WITHIN
        while (left := deadline - time.monotonic()) > 0:
            message = sub.get_message(timeout=left)
            if message is not None and message.get("type") == kind:
                return
        raise BrokerUnavailable(f"redis control: no {kind} within {SUBSCRIBED_WITHIN:g}s")

    def _next(self, sub: PubSub, timeout: float) -> bytes | None:
        with self._errors:
            message = sub.get_message(timeout=timeout)
        if message is None or message.get("type") != "message":
            return None  # a (re)subscription's confirmation after a reconnect, or nothing
        data = message.get("data")
        return data.encode() if isinstance(data, str) else data if isinstance(data, bytes) else None


def _close(sub: PubSub | None) -> None:
    """Close a subscription; its connection is dropped either way."""
    if sub is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            sub.close()


def _entry(member: Member) -> str:
    """A member of the members set: "<name> <worker id>" (a name has no space)."""
    return f"{member.name} {member.worker_id}"
