"""The envelope codec: round trips, limits, signing, and hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forkq.envelope import Codec, Message, make_message, readable_time
from forkq.exceptions import MessageRejected
from tests.bodies import nested_too_deeply

LIMIT = 4096


def codec(secret: str | None = None, max_bytes: int = LIMIT) -> Codec:
    return Codec(secret=secret, max_bytes=max_bytes)


def sample() -> Message:
    return make_message("proj.add", (1, 2), {"z": [3]}, queue="q", priority=5, headers={"h": "v"})


def test_round_trip() -> None:
    message = sample()
    assert codec().decode(codec().encode(message)) == message


def test_encode_refuses_unserialisable_arguments() -> None:
    with pytest.raises(TypeError, match=r"proj\.add"):
        codec().encode(make_message("proj.add", (object(),), {}, queue="q"))


def test_encode_refuses_oversized_message() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        codec().encode(make_message("proj.add", ("x" * LIMIT,), {}, queue="q"))


def test_decode_rejects_oversized_message_with_its_id() -> None:
    big = json.dumps({"id": "big-1", "task": "t", "queue": "q", "pad": "x" * LIMIT}).encode()
    with pytest.raises(MessageRejected, match="exceeds max_message_bytes") as rejected:
        codec().decode(big)
    # The id is read only from the first max_bytes, which here do not close the JSON.
    assert rejected.value.trusted


@pytest.mark.parametrize(
    ("body", "reason", "task_id"),
    [
        (b"not json", "malformed", None),
        (b"[1, 2]", "malformed", None),
        (b'{"id": "a1", "task": 5, "queue": "q", "created_at": 1}', "malformed", "a1"),
        (b'{"id": "a2", "queue": "q", "created_at": 1}', "malformed", "a2"),
        (b'{"id": "a3", "task": "t", "queue": "q", "created_at": 1, "v": 9}', "version 9", "a3"),
        (b'{"id": "a4", "task": "", "queue": "q", "created_at": 1}', "non-empty", "a4"),
        (
            b'{"id": "a5", "task": "t", "queue": "q", "created_at": 1, "retries": -1}',
            "negative",
            "a5",
        ),
        (b'{"id": 7, "task": "t", "queue": "q"}', "malformed", None),
        (b'"\x80"', "malformed", None),  # found by hypothesis: invalid UTF-8 in a JSON string
        (b'{"id": "a6", "task": "\xff", "queue": "q", "created_at": 1}', "malformed", None),
    ],
)
def test_malformed_messages_are_rejected_with_reason_and_id(
    body: bytes, reason: str, task_id: str | None
) -> None:
    with pytest.raises(MessageRejected, match=reason) as rejected:
        codec().decode(body)
    assert rejected.value.task_id == task_id
    assert rejected.value.trusted


def test_unknown_fields_are_tolerated_for_forward_compatibility() -> None:
    body = json.loads(codec().encode(sample()))
    body["added_in_a_later_version"] = True
    assert codec().decode(json.dumps(body).encode()).task == "proj.add"


def test_nesting_too_deep_to_decode_is_a_rejection_with_its_id() -> None:
    with pytest.raises(MessageRejected, match="nested too deeply") as rejected:
        codec(max_bytes=LIMIT * 10).decode(nested_too_deeply("deep-1"))
    assert rejected.value.task_id == "deep-1" and rejected.value.trusted


def test_arguments_too_deep_to_encode_are_a_type_error() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        codec().encode(make_message("t", [deep], {}, queue="q"))


def test_readable_time_says_when_a_time_is_impossible() -> None:
    assert readable_time(0) == "1970-01-01T00:00:00.000Z"
    assert readable_time(-1e30) == "an impossible time (-1e+30 s from 1970)"
    assert readable_time(1e300).startswith("an impossible time")


class TestSigning:
    def test_signed_round_trip(self) -> None:
        signed = codec("s3cret")
        data = signed.encode(sample())
        assert data.startswith(b"fq1.")
        assert signed.decode(data) == sample().__class__(
            **{f: getattr(signed.decode(data), f) for f in Message.__struct_fields__}
        )

    def test_unsigned_message_is_rejected_and_untrusted(self) -> None:
        with pytest.raises(MessageRejected, match="unsigned") as rejected:
            codec("s3cret").decode(codec().encode(sample()))
        assert not rejected.value.trusted and rejected.value.task_id is None

    def test_tampered_message_is_rejected(self) -> None:
        data = bytearray(codec("s3cret").encode(sample()))
        data[data.index(b"proj.add")] = ord("P")
        with pytest.raises(MessageRejected, match="bad signature") as rejected:
            codec("s3cret").decode(bytes(data))
        assert not rejected.value.trusted and rejected.value.task_id is None

    def test_wrong_secret_is_rejected(self) -> None:
        with pytest.raises(MessageRejected, match="bad signature"):
            codec("other").decode(codec("s3cret").encode(sample()))

    def test_signed_message_without_a_secret_is_rejected(self) -> None:
        with pytest.raises(MessageRejected, match="no secret"):
            codec().decode(codec("s3cret").encode(sample()))

    def test_truncated_signature_is_rejected(self) -> None:
        with pytest.raises(MessageRejected, match="bad signature"):
            codec("s3cret").decode(b"fq1.abc")


def _decodes_or_rejects(c: Codec, data: bytes) -> None:
    try:
        message = c.decode(data)
    except MessageRejected as rejected:
        assert rejected.reason
        return
    assert isinstance(message, Message) and message.id and message.task and message.queue


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_anything_but_rejection(data: bytes) -> None:
    _decodes_or_rejects(codec(), data)
    _decodes_or_rejects(codec("s3cret"), data)
    _decodes_or_rejects(codec("s3cret"), b"fq1." + data)
    # Arbitrary bytes inside JSON strings: invalid UTF-8 there once escaped as UnicodeDecodeError.
    _decodes_or_rejects(codec(), b'{"id": "' + data.replace(b'"', b"") + b'", "task": "t"}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "v": json_values | st.just(1),
        "id": json_values | st.text(min_size=1, max_size=40),
        "task": json_values | st.just("proj.add"),
        "args": json_values | st.lists(json_values, max_size=3),
        "kwargs": json_values,
        "queue": json_values | st.just("q"),
        "eta": json_values,
        "expires": json_values,
        "retries": json_values | st.integers(-3, 3),
        "priority": json_values,
        "headers": json_values,
        "created_at": json_values | st.floats(allow_nan=False),
        "origin": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(envelope_like)
def test_hostile_envelopes_never_raise_anything_but_rejection(fields: dict[str, object]) -> None:
    _decodes_or_rejects(codec(), json.dumps(fields).encode())
