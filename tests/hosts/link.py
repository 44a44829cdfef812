"""A TCP proxy that plays a network link: it forwards a listening address to a server (Redis
or RabbitMQ on 127.0.0.1) and can delay, stall, hold or reset what passes, per direction.

    with ProxyLoop() as loop:
        link = Link(loop, ("10.130.7.1", 0), ("127.0.0.1", 6379))
        link.delay(100)                 # 100 ms each way: a round trip takes 200 ms more
        link.blackhole(Direction.DOWN)  # requests arrive, replies are held: a one-way partition
        link.heal()                     # everything held is delivered, in order
        link.cut()                      # every connection reset (RST), as a crashed peer does

What holds:
- Bytes keep their order and are never dropped or altered; each chunk read is due `delay`
  after it arrived (a delay line: throughput is kept, latency added), plus, with probability
  `loss`, one `stall` (200 ms, Linux's minimum retransmission timeout): what a lost segment
  costs a TCP stream, whose later bytes wait behind it.
- A blackholed direction forwards nothing and closes nothing: connections stay open, the
  client's requests go unanswered and it times out, as in a partition. What arrives meanwhile
  is held (at most LINE_CHUNKS chunks, then the proxy stops reading and TCP's flow control
  stalls the sender) and delivered on heal. New connections are accepted and held the same
  way; a host whose connects must time out is partitioned at its link instead
  (`Host.partition`).
- `cut()` resets both sides of every open connection at once; later connections pass.
- Every socket is closed by `close()`: the connections, the listener and the loop's own.

All links of a cluster share one asyncio loop in one daemon thread (`ProxyLoop`): the test
process forks nothing itself (workers are subprocesses), so a thread is safe there.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

CHUNK = 65536
LINE_CHUNKS = 64  # chunks held per direction of a connection before reading stops
RTO = 0.2  # seconds: Linux's minimum retransmission timeout, the least a lost segment costs
CALL_TIMEOUT = 10.0

T = TypeVar("T")


class Direction(enum.Enum):
    UP = "up"  # from the host (the client) to the server
    DOWN = "down"  # from the server to the host
    BOTH = "both"

    def sides(self) -> tuple[Direction, ...]:
        return (Direction.UP, Direction.DOWN) if self is Direction.BOTH else (self,)


class ProxyLoop:
    """An asyncio loop running in a daemon thread; the test thread calls into it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hosts-proxy")
        self._thread.daemon = True
        self._thread.start()
        self._closed = False

    def call(self, work: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Runs `work` on the loop and returns its result: once a call returns, what it
        changed is in effect."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        """Cancels what still runs on the loop (links close their own first), stops it and
        closes its selector."""
        if self._closed:
            return
        self._closed = True
        self.call(_cancel_others())
        self.call(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self.loop.close()

    def __enter__(self) -> ProxyLoop:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class Shaping:
    """What one direction of a link does to the chunks it forwards; read per chunk."""

    delay: float = 0.0  # seconds each chunk is held
    loss: float = 0.0  # probability a chunk is held one stall more
    stall: float = RTO
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.flowing.set()


@dataclass(eq=False)
class Connection:
    """One client connection and the proxy's own connection to the server for it."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    task: asyncio.Task[None]

    def abort(self) -> None:
        """Close both sides with RST, as a crashed peer does."""
        _reset(self.client)
        _reset(self.server)

    def reset(self) -> None:
        """Abort, and stop forwarding for it."""
        self.abort()
        self.task.cancel()


class Link:
    """A listener on `listen` ((host, 0) picks a free port) forwarding to `target`."""

    def __init__(
        self, loop: ProxyLoop, listen: tuple[str, int], target: tuple[str, int], seed: int = 0
    ) -> None:
        self.target = target
        self._loop = loop
        self._random = random.Random(seed)
        self._shaping = {Direction.UP: Shaping(), Direction.DOWN: Shaping()}
        self._connections: set[Connection] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted since start
        self._server = loop.call(self._listen(listen))
        self.address, self.port = self._server.sockets[0].getsockname()[:2]
        self._closed = False

    def delay(self, ms: float, direction: Direction = Direction.BOTH) -> None:
        """Each chunk is held `ms` milliseconds before it is forwarded."""
        self._set(direction, delay=ms / 1000)

    def loss(
        self, fraction: float, stall_ms: float = RTO * 1000, direction: Direction = Direction.BOTH
    ) -> None:
        """A `fraction` of the chunks (0 to 1) costs one stall, as a lost segment does."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"loss {fraction!r}: give a fraction from 0 to 1")
        self._set(direction, loss=fraction, stall=stall_ms / 1000)

    def blackhole(self, direction: Direction = Direction.BOTH) -> None:
        """Forward nothing that way, close nothing: a partition, until `heal()`."""
        self._loop.call(self._flow(direction, False))

    def heal(self) -> None:
        """No delay, no loss, both ways flowing; what was held is delivered."""
        self._set(Direction.BOTH, delay=0.0, loss=0.0, stall=RTO)
        self._loop.call(self._flow(Direction.BOTH, True))

    def cut(self) -> int:
        """Reset every open connection now; returns how many there were."""
        return self._loop.call(self._cut())

    @property
    def connections(self) -> int:
        """Connections open through the link now."""
        return self._loop.call(self._count())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.call(self._close())

    def _set(self, direction: Direction, **values: float) -> None:
        for name, value in values.items():
            if value < 0:
                raise ValueError(f"{name} {value!r}: give a value from 0")
        for side in direction.sides():
            for name, value in values.items():
                setattr(self._shaping[side], name, value)  # plain floats, read per chunk

    async def _flow(self, direction: Direction, flowing: bool) -> None:
        for side in direction.sides():
            event = self._shaping[side].flowing
            if flowing:
                event.set()
            else:
                event.clear()

    async def _count(self) -> int:
        return len(self._connections)

    async def _cut(self) -> int:
        connections = list(self._connections)
        for connection in connections:
            connection.reset()
        await asyncio.gather(*(c.task for c in connections), return_exceptions=True)
        return len(connections)

    async def _close(self) -> None:
        self._server.close()
        await self._cut()
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        await asyncio.wait_for(self._server.wait_closed(), CALL_TIMEOUT)

    async def _listen(self, listen: tuple[str, int]) -> asyncio.Server:
        return await asyncio.start_server(self._accept, *listen, limit=CHUNK)

    async def _accept(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        self.accepted += 1
        try:
            server_in, server = await asyncio.wait_for(
                asyncio.open_connection(*self.target, limit=CHUNK), CALL_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            _reset(client)  # as the server's host would answer
            self._serving.discard(task)
            return
        connection = Connection(client, server, task)
        self._connections.add(connection)
        try:
            await _all_or_none(
                self._pump(client_in, server, self._shaping[Direction.UP]),
                self._pump(server_in, client, self._shaping[Direction.DOWN]),
            )
        except (OSError, asyncio.CancelledError):
            connection.abort()  # a reset on one side is passed on as a reset
        finally:
            self._connections.discard(connection)
            self._serving.discard(task)
            client.close()
            server.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, shaping: Shaping
    ) -> None:
        """Read chunks into a delay line while an other coroutine writes each when due."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(LINE_CHUNKS)
        clock = asyncio.get_running_loop().time

        async def receive() -> None:
            while True:
                data = await source.read(CHUNK)
                lost = shaping.loss > 0 and self._random.random() < shaping.loss
                await line.put((clock() + shaping.delay + (shaping.stall if lost else 0), data))
                if not data:
                    return

        async def send() -> None:
            while True:
                due, data = await line.get()
                if (wait := due - clock()) > 0:
                    await asyncio.sleep(wait)
                await shaping.flowing.wait()
                if not data:  # the sender's EOF, passed on as a half-close
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()

        await _all_or_none(receive(), send())


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _all_or_none(*work: Coroutine[Any, Any, None]) -> None:
    """Runs all to completion; if one fails or this is cancelled, the others are cancelled and
    the failure raised."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _cancel_others() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
