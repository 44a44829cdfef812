"""What finishing a workflow's message leads to, in a worker and in eager mode: its flow and
its task's record ─► `Effects`, which `ConsumerSession.finish` does before the ack.

    SUCCESS ─► the next step (flow.chain) sent, given the result, the rest of the chain
               travelling with it; each link sent, given the result; on the last step of a
               chord's member, its ChordVote, whose `then` is the body's messages (given the
               header's results by id: Gather)
    FAILURE ─► a FAILURE record, with this task's error, for each task of the rest of the
               chain (they will not run now, and their `get()` raises at once); the
               link_error callbacks of this task and of those, each sent this task's id;
               on a chord's member, a failed ChordVote, whose `then` is the body's messages
               sent to fail (Flow.failed): the body's worker writes the body's FAILURE, sends
               its link_error callbacks and goes on downstream, so that what follows a chord
               (an outer chord's vote included) fails the same way
    RETRY   ─► nothing here: only the next try, which carries the same flow

Every effect is keyed by a task id fixed when the workflow was sent, so doing them again after
a redelivery rewrites the same records, sends messages with the same task ids and counts the
same chord member once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from forkq.canvas.dispatch import Continuation, Value, body_messages, messages
from forkq.engines.contract import ChordVote, Effects, Outgoing, ResultBackend, ResultWrite
from forkq.envelope import Message
from forkq.exceptions import ConfigurationError, MessageRejected, Rejection, WorkflowError
from forkq.flow import (
    ChainNode,
    Failed,
    Flow,
    Node,
    TaskNode,
    member_ids,
    result_id,
    task_nodes,
)
from forkq.result import ResultRecord, decode_record, encode_storable, failure_record
from forkq.states import SUCCESS

if TYPE_CHECKING:
    from forkq.app import Forkq

log = logging.getLogger("forkq.worker")

_UNSENDABLE = (TypeError, ValueError, ConfigurationError)  # building or encoding a message


def effects_of(app: Forkq, message: Message, record: ResultRecord) -> tuple[ResultRecord, Effects]:
    """The effects of the final record (SUCCESS or FAILURE) of a message with a flow, and the
    record to store: a success whose next step cannot be sent (a message over
    max_message_bytes, say) is the task's failure (`WorkflowError`)."""
    flow = message.flow
    assert flow is not None
    now = time.time()
    if record.state == SUCCESS:
        try:
            return record, _Effects(app, message, flow, now).success(record.result)
        except _UNSENDABLE as exc:
            reason = f"the workflow's next step cannot be sent: {exc}"
            record = failure_record(
                WorkflowError.__name__, reason, retries=record.retries, name=message.task
            )
            log.error("task %s[%s]: %s", message.task, message.id, reason)
    failed = flow.failed or Failed(
        task_id=message.id,
        exc_type=record.exc_type or "Error",
        exc_module=record.exc_module,
        exc_message=record.exc_message or "",
    )
    return record, _Effects(app, message, flow, now).failure(failed)


def rejection_effects(app: Forkq, message: Message, rejected: MessageRejected) -> Effects | None:
    """A decoded message that will not run (its task unknown here, expired, its arguments
    unfit): the effects of its failure, so that its workflow does not wait for it for ever."""
    if message.flow is None:
        return None
    record = failure_record(rejected.exc_type, rejected.reason, name=message.task)
    return effects_of(app, message, record)[1]


def stores_result(message: Message) -> bool:
    """Whether the task's result is stored whatever its `ignore_result`: a chord's member,
    whose result its body gathers."""
    flow = message.flow
    return flow is not None and flow.chord is not None and not flow.chain


def gathered(app: Forkq, message: Message) -> Message:
    """A chord body's message with the header's results, in order, put first among its
    arguments: read with one `get_many`. A result missing (expired) or not a success
    rejects the body (`WorkflowError`), and its workflow fails downstream."""
    flow = message.flow
    assert flow is not None and flow.gather is not None
    gather = flow.gather
    ids = member_ids(gather.id, gather.size, gather.ids)
    values = []
    for task_id, stored in zip(ids, app.backend.get_many(ids), strict=True):
        if stored is None or stored.state != SUCCESS:
            found = "no result (expired?)" if stored is None else f"state {stored.state}"
            reason = f"chord {gather.id}: its member {task_id} has {found}"
            raise MessageRejected(reason, message.id, kind=Rejection.WORKFLOW)
        values.append(decode_record(stored.payload).result)
    return msgspec.structs.replace(message, args=[values, *message.args])


def not_run(message: Message, failed: Failed) -> ResultRecord:
    """The record of a task sent only to fail (Flow.failed): the upstream task's error."""
    log.info("task %s[%s] not run: task %s failed", message.task, message.id, failed.task_id)
    return _downstream_failure(failed, message.task)


def apply_effects(
    backend: ResultBackend,
    publish: Callable[[Sequence[Outgoing]], None],
    write: ResultWrite | None,
    effects: Effects | None,
) -> None:
    """Do `effects` and store `write` the way `ConsumerSession.finish` does where its engine
    cannot do it in one round trip (eager mode, and a rejected message's before it is
    dead-lettered): the writes with the vote counted, the messages, then `fired`."""
    writes = () if write is None else (write,)
    if effects is None:
        if writes:
            backend.store_all(writes)
        return
    writes = (*writes, *effects.writes)
    vote = effects.vote
    fires = backend.vote(writes, vote) if vote is not None else False
    if vote is None and writes:
        backend.store_all(writes)
    sent = (*effects.publish, *vote.then) if vote is not None and fires else effects.publish
    if sent:
        publish(sent)
    if vote is not None and fires:
        backend.fired(vote)


class _Effects:
    """The effects of one message's outcome."""

    def __init__(self, app: Forkq, message: Message, flow: Flow, now: float) -> None:
        self.app = app
        self.message = message
        self.flow = flow
        self.now = now
        self.ttl = app.settings.result_ttl

    def success(self, value: object) -> Effects:
        flow, given = self.flow, Value(value)
        sent: list[Message] = []
        vote = None
        if flow.chain:
            then = Continuation(flow.chain[1:], flow.chord)
            sent += messages(flow.chain[0], given, then, now=self.now)
        elif flow.chord is not None:
            body = body_messages(flow.chord, now=self.now)
            vote = self._vote(self.message.id, failed=False, then=body)
        for callback in flow.link:
            sent += messages(callback, given, now=self.now)
        return Effects(publish=self._outgoing(sent), vote=vote)

    def failure(self, failed: Failed) -> Effects:
        flow = self.flow
        downstream = task_nodes(flow.chain)
        writes = tuple(self._write(t.id, _downstream_failure(failed, t.task)) for t in downstream)
        errbacks = _distinct([*flow.link_error, *(e for t in downstream for e in t.link_error)])
        sent: list[Message] = []
        for errback in errbacks:
            try:
                sent += messages(errback, Value(failed.task_id), now=self.now)
            except _UNSENDABLE as exc:
                log.error("task %s: an error callback cannot be sent: %s", self.message.id, exc)
        vote = None
        if flow.chord is not None:
            member = result_id(ChainNode(steps=flow.chain)) if flow.chain else self.message.id
            try:
                body = body_messages(flow.chord, failed=failed, now=self.now)
            except _UNSENDABLE as exc:
                log.error("chord %s: its failure cannot be sent on: %s", flow.chord.id, exc)
                body = []
            vote = self._vote(member or self.message.id, failed=True, then=body)
        return Effects(writes=writes, publish=self._outgoing(sent), vote=vote)

    def _vote(self, member: str, *, failed: bool, then: list[Message]) -> ChordVote:
        chord = self.flow.chord
        assert chord is not None
        return ChordVote(
            chord=chord.id,
            member=member,
            size=chord.size,
            failed=failed,
            then=self._outgoing(then),
            ttl=self.ttl,
        )

    def _outgoing(self, sent: list[Message]) -> tuple[Outgoing, ...]:
        return tuple(self.app.to_outgoing(m, self.now) for m in sent)

    def _write(self, task_id: str, record: ResultRecord) -> ResultWrite:
        record, payload = encode_storable(record)
        return ResultWrite(task_id, record.state, payload, self.ttl)


def _downstream_failure(failed: Failed, name: str) -> ResultRecord:
    return failure_record(
        failed.exc_type,
        failed.exc_message,
        f"not run: task {failed.task_id}, which it depends on, failed\n",
        exc_module=failed.exc_module,
        name=name,
    )


def _distinct(nodes: list[Node]) -> list[Node]:
    """The callbacks, each once: the same signature linked to several tasks of the rest of a
    chain (a group's members) is built once per task, with ids of its own."""
    seen: set[bytes] = set()
    kept = []
    for node in nodes:
        key = msgspec.json.encode(_without_ids(node))
        if key not in seen:
            seen.add(key)
            kept.append(node)
    return kept


def _without_ids(node: Node) -> Node:
    if isinstance(node, TaskNode):
        return msgspec.structs.replace(node, id="")
    return node
