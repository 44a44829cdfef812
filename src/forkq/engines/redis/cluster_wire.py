"""The `Wire`'s calls on a Redis Cluster: each command sent to the node serving its key's slot,
on that node's own `Wire`.

    call / script    ->  the node of the command's first key (MGET: one batch of GETs a node)
    send_batch       ->  one write a node, replies put back in the batch's order
    send_transaction ->  one MULTI/EXEC a slot, in the order the slots first appear
    read_groups      ->  one XREADGROUP BLOCK a slot, all in flight; the first reply ends it

The slot map is redis-py's (`RedisCluster.nodes_manager`). A node that cannot be connected to
before anything is sent on it (a primary failed, its replica perhaps promoted), and a MOVED
reply (a command answered MOVED did not run), refresh the map, and the command goes to the
slot's node now, once. Any other connection problem marks the map stale, refreshed before the
next call: the caller's next attempt reaches the new primary.

A blocking read across slots: the reads of the other slots are still blocked when the first
answers. Their connections are closed, not read: a read that delivered entries in the
meantime leaves them pending for the consumer, which is told which streams to read again
(`GroupRead.unsure`), as after any fetch whose reply was lost.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import MovedError, RedisClusterException

from forkq.engines.redis.client import Batch, Client, GroupRead, Wire, read_command

T = TypeVar("T")
_KEY_AFTER_NUMKEYS = ("EVAL", "EVALSHA")
_MARGIN = 1.0  # seconds a blocked read's reply may come after its BLOCK time
_OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError)


def key_of(command: Sequence[Any]) -> Any:
    """The key a command is routed by: its first."""
    if command[0] in _KEY_AFTER_NUMKEYS:
        return command[3]
    if command[0] == "XREADGROUP":
        return command[list(command).index("STREAMS") + 1]
    return command[1]


class ClusterWire:
    def __init__(self, client: RedisCluster) -> None:
        self._client: Any = client  # redis-py's cluster API is untyped
        self._wires: dict[str, Wire] = {}  # a node's name -> the Wire on its connections
        self._stale = False

    def call(self, *args: Any) -> Any:
        if args[0] == "MGET":
            batch = Batch()
            for key in args[1:]:
                batch.execute_command("GET", key)
            return self.send_batch(batch)
        return self._routed(key_of(args), lambda wire: wire.call(*args))

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return self._routed(keys[0], lambda wire: wire.script(script, keys, args))

    def send_batch(self, batch: Batch) -> list[Any]:
        """Each node's commands in one write; every reply read before the first error raised."""
        by_node: dict[str, list[int]] = {}
        for index, command in enumerate(batch.commands):
            by_node.setdefault(self._node(key_of(command)), []).append(index)
        replies: list[Any] = [None] * len(batch.commands)
        failed: Exception | None = None
        for indexes in by_node.values():
            part = Batch()
            part.commands = [batch.commands[i] for i in indexes]
            try:
                got = self._routed(key_of(part.commands[0]), _batch_sender(part))
            except redis.ResponseError as exc:  # replies of this node's part are lost with it
                failed = failed or exc
                continue
            for index, reply in zip(indexes, got, strict=True):
                replies[index] = reply
        if failed is not None:
            raise failed
        return replies

    def send_transaction(self, batch: Batch, then: Sequence[tuple[Any, ...]] = ()) -> list[Any]:
        """One MULTI/EXEC a slot, each applied whole or not at all, one after the other in the
        order their slots first appear; `then` after each (a publish's WAIT: the replies' least
        is given as its one reply)."""
        by_slot: dict[int, list[int]] = {}
        for index, command in enumerate(batch.commands):
            by_slot.setdefault(self._client.keyslot(key_of(command)), []).append(index)
        replies: list[Any] = [None] * len(batch.commands)
        after: list[list[Any]] = []
        for indexes in by_slot.values():
            part = Batch()
            part.commands = [batch.commands[i] for i in indexes]
            got = self._routed(key_of(part.commands[0]), _transaction_sender(part, then))
            for index, reply in zip(indexes, got[: len(indexes)], strict=True):
                replies[index] = reply
            after.append(got[len(indexes) :])
        if not then:
            return replies
        return [*replies, *[min(column) for column in zip(*after, strict=True)]]

    def read_groups(
        self, group: str, consumer: str, count: int, block_ms: int, streams: Sequence[str]
    ) -> GroupRead:
        """XREADGROUP BLOCK over `streams`: one command when they share a slot, else one a
        slot, all sent at once; the first to answer ends the wait (see the module's doc)."""
        by_slot: dict[int, list[str]] = {}
        for stream in streams:
            by_slot.setdefault(self._client.keyslot(stream), []).append(stream)
        if len(by_slot) == 1:
            command = read_command(group, consumer, count, block_ms, streams)
            return GroupRead(self.call(*command) or [])
        reads = [
            (self._server(parts[0]), read_command(group, consumer, count, block_ms, parts))
            for parts in by_slot.values()
        ]
        try:
            replies, unsure = _first_of(reads, block_ms / 1000 + _MARGIN)
        except _OUTAGE:
            self._stale = True
            raise
        order = {stream: index for index, stream in enumerate(streams)}
        pairs = sorted(
            (p for reply in replies for p in _pairs(reply)), key=lambda p: order[_text(p[0])]
        )
        cut = tuple(s for _, command in reads if command in unsure for s in _streams_of(command))
        return GroupRead(pairs, cut)

    def _routed(self, key: Any, use: Callable[[Wire], T]) -> T:
        """`use` on the Wire of the node serving `key`'s slot (see the module's doc)."""
        try:
            wire = self._wire(key)
            try:
                wire.connect()
            except _OUTAGE:  # nothing sent yet
                self._refresh()
                wire = self._wire(key)
            try:
                return use(wire)
            except MovedError:
                self._refresh()
                return use(self._wire(key))
        except _OUTAGE:
            self._stale = True
            raise

    def _wire(self, key: Any) -> Wire:
        name = self._node(key)
        wire = self._wires.get(name)
        if wire is None:
            node = self._client.get_node(node_name=name)
            wire = self._wires[name] = Wire(self._client.get_redis_connection(node))
        return wire

    def _server(self, key: Any) -> redis.Redis:
        node = self._client.get_node(node_name=self._node(key))
        server: redis.Redis = self._client.get_redis_connection(node)
        return server

    def _node(self, key: Any) -> str:
        if self._stale:
            self._refresh()
        try:
            node = self._client.nodes_manager.get_node_from_slot(self._client.keyslot(key))
        except RedisClusterException as exc:  # a slot no node serves: a cluster failing over
            self._stale = True
            raise redis.exceptions.ClusterDownError(str(exc)) from None
        name: str = node.name
        return name

    def _refresh(self) -> None:
        try:
            self._client.nodes_manager.initialize()
        except RedisClusterException as exc:  # no node answers with the layout
            self._stale = True
            raise redis.ConnectionError(str(exc).replace("\n", " ")) from None
        self._stale = False
        self._wires = {n: w for n, w in self._wires.items() if self._client.get_node(node_name=n)}


def _first_of(
    reads: list[tuple[redis.Redis, tuple[Any, ...]]], timeout: float
) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """Send every read on a connection of its server's; wait for the first reply, read every
    one that has come, close the connections of the rest. Their replies, and the reads cut."""
    held: list[tuple[redis.Redis, Any, tuple[Any, ...]]] = [
        (server, server.connection_pool.get_connection(), command) for server, command in reads
    ]
    selector = selectors.DefaultSelector()
    pending = list(held)
    replies: list[Any] = []
    try:
        for _, conn, command in held:
            conn.send_packed_command(conn.pack_command(*command))
            selector.register(conn._sock, selectors.EVENT_READ, conn)
        deadline = time.monotonic() + timeout
        ready = selector.select(max(0.0, deadline - time.monotonic()))
        answered = {key.data for key, _ in ready} | {key.data for key, _ in selector.select(0)}
        for entry in list(pending):
            if entry[1] in answered:
                replies.append(entry[1].read_response())
                pending.remove(entry)
    finally:
        selector.close()
        for server, conn, _ in held:
            if any(conn is p[1] for p in pending):
                conn.disconnect()  # a reply left unread would be taken for the next command's
            server.connection_pool.release(conn)
    return replies, [command for _, _, command in pending]


def _batch_sender(batch: Batch) -> Callable[[Wire], list[Any]]:
    return lambda wire: wire.send_batch(batch)


def _transaction_sender(
    batch: Batch, then: Sequence[tuple[Any, ...]]
) -> Callable[[Wire], list[Any]]:
    return lambda wire: wire.send_transaction(batch, then)


def _streams_of(command: tuple[Any, ...]) -> list[str]:
    streams = list(command[command.index("STREAMS") + 1 :])
    return streams[: len(streams) // 2]


def _pairs(reply: Any) -> list[Any]:
    """An XREADGROUP reply as [stream, entries] pairs: RESP3 replies with a map."""
    return [list(p) for p in reply.items()] if isinstance(reply, dict) else list(reply or [])


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


#: The hot path's calls, on one server or on a cluster.
AnyWire = Wire | ClusterWire


def wire_for(client: Client) -> AnyWire:
    """The Wire for a client: of its one server, or routing each command to its key's node."""
    return ClusterWire(client) if isinstance(client, RedisCluster) else Wire(client)
