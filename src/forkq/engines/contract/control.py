"""Control across hosts: requests to workers and their replies, carried by the broker.

    client: members() ─► expected names (or the --destination) ─► open an inbox ─► request
            (signed) to every worker's agent ─► replies (signed) until every expected worker
            answered or the deadline ─► Collected: replies by worker, the missing named
    agent:  listen(name): subscribe, then announce ─► receive: checked (signature, form, age,
            id not seen before, addressed to it) ─► reply; announce every `refresh_every`
            seconds; withdraw when it leaves

Membership: who should answer is who announced itself (`Member`) in the last
`PRESENCE_KEPT` seconds and has not withdrawn. An agent withdraws when its worker stops
cleanly; a worker killed, frozen or cut off stays a member until its announcements are
`PRESENCE_KEPT` old, and meanwhile is listed as missing by every request that expects it.

Authentication: with the app's `secret`, every request and reply is signed with forkq's one
HMAC scheme (`forkq.signing`), and one whose signature is missing or wrong is refused: logged
(a line per `_LOG_EVERY` seconds at most, with a count), dropped, never raised. A request is
acted on at most once (its id is remembered for `MAX_AGE`), and not at all when it is older
than `MAX_AGE` by the receiver's clock: a captured request cannot be replayed later.
Announcements are not signed: a forged one can only add a name to a reply's missing list.

Each engine carries the bytes (`_send_request`, `_next_reply`, ...): what travels, its checks
and the waiting are here, so that every engine behaves alike (tests/engines/
test_control_conformance.py runs one suite against each).
"""

from __future__ import annotations

import abc
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from forkq.signing import SignatureRefused, Signer

log = logging.getLogger("forkq.control")

#: Seconds a member that stopped announcing itself (without withdrawing) is still expected.
PRESENCE_KEPT = 600.0
#: Seconds a request stays valid after it was sent (either way, for clocks out of step).
MAX_AGE = 60.0
#: A request sent more than this before its agent began to listen is refused: the ids an agent
#: acted on die with it, so one restarted within MAX_AGE would otherwise act on a replay of a
#: request its predecessor acted on. The margin is for clocks a little out of step.
LISTENING_MARGIN = 2.0
#: Bytes of one request or reply, at most; larger ones are refused unread.
MAX_CONTROL_BYTES = 4 << 20
_LOG_EVERY = 10.0  # seconds between two log lines about refused messages

T = TypeVar("T")


class ControlRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One command to every worker (`destination` None) or to those named."""

    id: str
    command: str
    args: dict[str, Any] = {}
    destination: tuple[str, ...] | None = None
    reply_to: str  # the client's inbox, in the engine's terms
    sent_at: float  # Unix time, the sender's clock
    timeout: float  # seconds the sender waits for replies

    def addressed_to(self, name: str) -> bool:
        return self.destination is None or name in self.destination

    def problem(self) -> str | None:
        """Why this decoded request cannot be acted on, or None."""
        if not 0 < len(self.command) <= 100 or not 0 < len(self.reply_to) <= 255:
            return "a request needs a command and a reply address (at most 100, 255 characters)"
        if not (math.isfinite(self.sent_at) and math.isfinite(self.timeout)):
            return "a request's times must be finite"
        return None


class ControlReply(msgspec.Struct, frozen=True, kw_only=True):
    """One worker's answer; `body` holds `{"error": "..."}` when it refused the command."""

    request_id: str
    worker: str  # the worker's name (`-n`)
    worker_id: str = ""  # the worker's id, one per start: tells two workers of one name apart
    body: dict[str, Any] = {}


class Member(msgspec.Struct, frozen=True):
    """A worker that announced itself: `seen_at` is its latest announcement (Unix time)."""

    name: str
    worker_id: str
    seen_at: float


class Collected(msgspec.Struct, frozen=True):
    """What came back for one request: each worker's first reply, by name, and the names
    expected that did not answer in time (with when each last announced itself, if known)."""

    request: ControlRequest
    replies: dict[str, ControlReply]
    missing: tuple[str, ...] = ()
    last_seen: dict[str, float] = {}
    duplicates: tuple[str, ...] = ()  # names two workers (two worker ids) answered to


_REQUESTS = msgspec.json.Decoder(ControlRequest)
_REPLIES = msgspec.json.Decoder(ControlReply)
_ENCODER = msgspec.json.Encoder()


def encode_control(value: ControlRequest | ControlReply) -> bytes:
    return _ENCODER.encode(value)


class ControlChannel(abc.ABC):
    """One process's end of the control channel of a broker (`Broker.control_channel`): a
    client's (`ask`) or an agent's (`listen`, `receive`, `reply`, `announce`, `withdraw`).
    Not shared across processes. Driver errors are `BrokerError`s (`BrokerUnavailable` for a
    connection problem); hostile bytes are never raised, only refused."""

    #: Seconds between two announcements of a listening agent.
    refresh_every: float = 10.0

    def __init__(self, secret: str | None) -> None:
        self._signer = Signer(secret)
        self._member: Member | None = None
        self._acted: dict[str, float] = {}  # request ids acted on -> when (monotonic)
        self._listening_since = math.inf  # time.time() of `listen`
        self.refused = 0  # messages dropped for their signature, size or form
        self._unlogged = 0
        self._logged_at = -math.inf

    # -- client ------------------------------------------------------------------------------

    def ask(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        timeout: float = 1.0,
    ) -> Collected:
        """Send `command` to every member, or to the workers named, and collect replies until
        each expected one answered, or for `timeout` seconds when none is known."""
        known = {m.name: m for m in self.members()}
        expected = set(known) if destination is None else set(destination)
        deadline = time.monotonic() + timeout
        request = ControlRequest(
            id=uuid.uuid4().hex,
            command=command,
            args=dict(args or {}),
            destination=None if destination is None else tuple(destination),
            reply_to=self._inbox(),
            sent_at=time.time(),
            timeout=timeout,
        )
        self._send_request(self._signer.sign(encode_control(request)))
        replies, twice = self._collect(request, expected, deadline)
        missing = tuple(sorted(expected - set(replies)))
        seen = {name: known[name].seen_at for name in missing if name in known}
        return Collected(request, replies, missing, seen, tuple(sorted(twice)))

    def _collect(
        self, request: ControlRequest, expected: set[str], deadline: float
    ) -> tuple[dict[str, ControlReply], set[str]]:
        replies: dict[str, ControlReply] = {}
        twice: set[str] = set()
        while not (expected and expected <= replies.keys()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            raw = self._next_reply(left)
            reply = None if raw is None else self._opened(raw, _REPLIES)
            if reply is None or reply.request_id != request.id:
                continue
            first = replies.setdefault(reply.worker, reply)
            if first.worker_id != reply.worker_id:
                twice.add(reply.worker)
        return replies, twice

    def members(self) -> list[Member]:
        """The workers expected to answer: each name's latest announcement, not withdrawn,
        from the last `PRESENCE_KEPT` seconds."""
        latest: dict[str, Member] = {}
        for m in self._members(time.time() - PRESENCE_KEPT):
            if m.name not in latest or m.seen_at > latest[m.name].seen_at:
                latest[m.name] = m
        return sorted(latest.values(), key=lambda m: m.name)

    # -- agent -------------------------------------------------------------------------------

    def listen(self, name: str, worker_id: str) -> None:
        """Take the requests addressed to `name` (or to every worker) from now on, then
        announce it: a client that sees the announcement reaches the agent."""
        self._member = Member(name, worker_id, 0.0)
        self._listening_since = time.time()
        self._subscribe()
        self.announce()

    def announce(self) -> None:
        """This agent's worker is a member (again, for `PRESENCE_KEPT` more seconds)."""
        assert self._member is not None, "listen() first"
        self._announce(msgspec.structs.replace(self._member, seen_at=time.time()))

    def withdraw(self) -> None:
        """This agent's worker leaves: no longer expected to answer."""
        if self._member is not None:
            self._withdraw(self._member)

    def receive(self, timeout: float) -> ControlRequest | None:
        """The next valid request addressed to this worker, waiting up to `timeout` seconds
        for it; None when none came. Others are skipped; forged or stale ones refused."""
        assert self._member is not None, "listen() first"
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            raw = self._next_request(left)
            if raw is None:
                continue
            request = self._opened(raw, _REQUESTS)
            if request is None or not request.addressed_to(self._member.name):
                continue
            why = request.problem() or self._unfit(request)
            if why is not None:
                self._refuse(why)
                continue
            return request
        return None

    def reply(self, request: ControlRequest, body: Mapping[str, Any]) -> None:
        assert self._member is not None, "listen() first"
        reply = ControlReply(
            request_id=request.id,
            worker=self._member.name,
            worker_id=self._member.worker_id,
            body=dict(body),
        )
        self._send_reply(request.reply_to, self._signer.sign(encode_control(reply)))

    def _unfit(self, request: ControlRequest) -> str | None:
        """Why a request is stale or already acted on; None, and it is remembered, if not."""
        age = time.time() - request.sent_at
        if abs(age) > MAX_AGE:
            return f"request {request.command!r} sent {age:.0f}s ago (clocks out of step?)"
        if request.sent_at < self._listening_since - LISTENING_MARGIN:
            return f"request {request.command!r} sent before this agent listened (a replay?)"
        now = time.monotonic()
        self._acted = {i: at for i, at in self._acted.items() if now - at < 2 * MAX_AGE}
        if request.id in self._acted:
            return f"request {request.command!r} {request.id} received twice"
        self._acted[request.id] = now
        return None

    # -- checks shared by both ends ----------------------------------------------------------

    def _opened(self, raw: bytes, decoder: msgspec.json.Decoder[T]) -> T | None:
        """The value signed in `raw`, or None (counted, logged) when it is refused."""
        if len(raw) > MAX_CONTROL_BYTES:
            self._refuse(f"{len(raw)} bytes, over {MAX_CONTROL_BYTES}")
            return None
        try:
            return decoder.decode(self._signer.verified(raw))
        except SignatureRefused as exc:
            self._refuse(str(exc))
        except Exception as exc:  # whatever the bytes hold, the answer is a refusal
            self._refuse(f"malformed: {str(exc)[:200] or type(exc).__name__}")
        return None

    def _refuse(self, why: str) -> None:
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY:
            log.warning("control: refused %d message(s); the latest: %s", self._unlogged, why)
            self._unlogged, self._logged_at = 0, now

    # -- what each engine provides -----------------------------------------------------------

    @abc.abstractmethod
    def _inbox(self) -> str:
        """The address that reaches this channel's inbox, which is opened at the first call
        and kept until `close`: replies to an earlier request may still come to it, told
        apart by their request id."""

    @abc.abstractmethod
    def _send_request(self, raw: bytes) -> None:
        """To every listening agent."""

    @abc.abstractmethod
    def _next_reply(self, timeout: float) -> bytes | None:
        """The next message of the inbox, waiting up to `timeout` seconds; None: nothing came,
        or something that was not a message."""

    @abc.abstractmethod
    def _subscribe(self) -> None:
        """Start receiving requests."""

    @abc.abstractmethod
    def _next_request(self, timeout: float) -> bytes | None:
        """The next request sent to the agents, waiting up to `timeout` seconds."""

    @abc.abstractmethod
    def _send_reply(self, address: str, raw: bytes) -> None: ...

    @abc.abstractmethod
    def _announce(self, member: Member) -> None: ...

    @abc.abstractmethod
    def _withdraw(self, member: Member) -> None: ...

    @abc.abstractmethod
    def _members(self, since: float) -> Iterable[Member]:
        """Announcements made since `since` (Unix time) and not withdrawn; several of one
        name may be among them."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close what this channel opened (an agent's subscription, an open inbox)."""
