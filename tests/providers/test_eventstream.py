"""The AWS event-stream codec: framing, CRCs, truncation, and exception events."""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from deja.errors import (
    BadRequestError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    ServerError,
    UpstreamTimeoutError,
)
from deja.providers.eventstream import (
    EventStreamDecoder,
    EventStreamMessage,
    encode_message,
    exception_error,
    to_event,
    to_events,
)

ALL_TYPES: dict[str, Any] = {
    "true": True,
    "false": False,
    "small": 7,
    "negative": -40_000,
    "big": 2**40,
    "bytes": b"\x00\x01\xff",
    "string": "héllo",
    "when": datetime.datetime(2026, 1, 26, 12, 30, 15, 250_000, tzinfo=datetime.UTC),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


def event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(payload))


def exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


STREAM = (
    event("messageStart", {"role": "assistant", "p": "abcdef"})
    + event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Bonjour"}})
    + event("contentBlockStop", {"contentBlockIndex": 0})
    + event("messageStop", {"stopReason": "end_turn"})
)
EXPECTED_EVENTS = [
    {"messageStart": {"role": "assistant", "p": "abcdef"}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Bonjour"}}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {"messageStop": {"stopReason": "end_turn"}},
]


def test_every_header_type_round_trips() -> None:
    frame = encode_message(ALL_TYPES, b"payload")
    decoder = EventStreamDecoder()
    [message] = decoder.feed(frame)
    assert message == EventStreamMessage(ALL_TYPES, b"payload")
    assert decoder.finished
    decoder.close()


def test_frame_layout_is_the_documented_one() -> None:
    frame = encode_message({":message-type": "event"}, b"{}")
    total, headers_length, prelude_crc = struct.unpack(">III", frame[:12])
    assert total == len(frame)
    assert prelude_crc == zlib.crc32(frame[:8])
    # name length, name, type 7 (string), uint16 length, value
    assert frame[12 : 12 + headers_length] == b"\x0d:message-type\x07\x00\x05event"
    assert frame[12 + headers_length : -4] == b"{}"
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[:-4])


def test_botocore_reads_what_we_encode() -> None:
    # An independent decoder: botocore's own, as the AWS SDK reads Bedrock's streams.
    buffer = EventStreamBuffer()
    buffer.add_data(STREAM + encode_message(ALL_TYPES, b"x"))
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages[:4]] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
    ]
    assert orjson.loads(messages[1].payload) == EXPECTED_EVENTS[1]["contentBlockDelta"]
    last = messages[4].headers
    assert last["string"] == "héllo"
    assert last["bytes"] == b"\x00\x01\xff"
    assert last["big"] == 2**40
    assert last["true"] is True and last["false"] is False
    assert last["id"] == ALL_TYPES["id"].bytes  # botocore keeps UUIDs as bytes


@pytest.mark.parametrize("split", [1, 3, 12, 13, 50, None])
def test_messages_are_decoded_however_the_network_cuts_them(split: int | None) -> None:
    decoder = EventStreamDecoder()
    pieces = (
        [STREAM] if split is None else [STREAM[i : i + split] for i in range(0, len(STREAM), split)]
    )
    messages = [m for piece in pieces for m in decoder.feed(piece)]
    assert to_events(messages) == EXPECTED_EVENTS
    assert decoder.finished
    decoder.close()


def test_a_stream_cut_inside_a_message_is_detected_at_close() -> None:
    decoder = EventStreamDecoder()
    cut = len(STREAM) - 5
    messages = decoder.feed(STREAM[:cut])
    assert len(messages) == 3  # the last message is incomplete
    assert not decoder.finished
    with pytest.raises(ProviderError, match="ended inside a message"):
        decoder.close()


def test_a_stream_cut_inside_the_prelude_is_detected_at_close() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(STREAM[:7]) == []
    with pytest.raises(ProviderError, match="7 bytes"):
        decoder.close()


def test_a_corrupt_payload_fails_the_message_crc_and_poisons_the_decoder() -> None:
    frame = bytearray(event("contentBlockDelta", {"delta": {"text": "Bonjour"}}))
    frame[-8] ^= 0x01  # a byte of the payload
    decoder = EventStreamDecoder()
    with pytest.raises(ProviderError, match="message CRC"):
        decoder.feed(bytes(frame))
    # Framing is lost: even a good message is refused afterwards, and close says why.
    with pytest.raises(ProviderError, match="message CRC"):
        decoder.feed(STREAM)
    with pytest.raises(ProviderError, match="message CRC"):
        decoder.close()
    assert not decoder.finished


def test_a_corrupt_length_fails_the_prelude_crc_before_waiting_for_it() -> None:
    frame = bytearray(STREAM)
    frame[1] ^= 0x7F  # the total length now claims megabytes
    decoder = EventStreamDecoder()
    with pytest.raises(ProviderError, match="prelude CRC"):
        decoder.feed(bytes(frame[:12]))  # twelve bytes suffice to notice


def test_impossible_lengths_with_a_valid_prelude_crc_are_refused() -> None:
    prelude = struct.pack(">II", 10, 0)  # shorter than the 16 bytes of an empty message
    frame = prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\x00" * 4
    with pytest.raises(ProviderError, match="impossible lengths"):
        EventStreamDecoder().feed(frame)


def test_an_unknown_header_type_is_a_corrupt_frame() -> None:
    block = b"\x01a\x0b"  # header "a" of type 11, which does not exist
    prelude = struct.pack(">II", 16 + len(block), len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block
    frame = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(ProviderError, match="unknown type 11"):
        EventStreamDecoder().feed(frame)


def test_a_closed_decoder_takes_no_more_input() -> None:
    decoder = EventStreamDecoder()
    decoder.close()
    with pytest.raises(ValueError, match="closed"):
        decoder.feed(STREAM)


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("throttlingException", RateLimitError, 429),
        ("validationException", BadRequestError, 400),
        ("internalServerException", ServerError, 500),
        ("serviceUnavailableException", ServerError, 503),
        ("modelStreamErrorException", ServerError, 424),
        ("modelTimeoutException", UpstreamTimeoutError, 408),
        ("accessDeniedException", PermissionDeniedError, 403),
    ],
)
def test_exception_messages_raise_the_typed_error(
    kind: str, error: type[ProviderError], status: int
) -> None:
    [message] = EventStreamDecoder().feed(exception(kind, "Too many tokens, please wait."))
    with pytest.raises(error, match=f"{kind}: Too many tokens") as info:
        to_event(message)
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.provider == "bedrock"
    assert info.value.body == {"message": "Too many tokens, please wait."}


def test_an_unknown_exception_is_a_plain_provider_error() -> None:
    [message] = EventStreamDecoder().feed(exception("somethingNewException", "?"))
    with pytest.raises(ProviderError) as info:
        to_event(message)
    assert type(info.value) is ProviderError
    assert info.value.status_code is None


def test_error_messages_carry_their_code_in_headers() -> None:
    frame = encode_message(
        {
            ":message-type": "error",
            ":error-code": "ThrottlingException",
            ":error-message": "Rate exceeded",
        }
    )
    [message] = EventStreamDecoder().feed(frame)
    with pytest.raises(RateLimitError, match="Rate exceeded"):
        to_event(message)


def test_exception_error_accepts_both_spellings() -> None:
    assert isinstance(exception_error("ThrottlingException", "x"), RateLimitError)
    assert isinstance(exception_error("throttlingException", "x"), RateLimitError)


def test_an_event_without_a_type_or_with_a_bad_payload_is_refused() -> None:
    [untyped] = EventStreamDecoder().feed(encode_message({":message-type": "event"}, b"{}"))
    with pytest.raises(ProviderError, match="no :event-type"):
        to_event(untyped)
    bad = encode_message({":message-type": "event", ":event-type": "messageStart"}, b"{not json")
    [message] = EventStreamDecoder().feed(bad)
    with pytest.raises(ProviderError, match="9 bytes is not JSON"):
        to_event(message)


def test_an_empty_payload_is_an_empty_event() -> None:
    [message] = EventStreamDecoder().feed(
        encode_message({":message-type": "event", ":event-type": "initial-response"})
    )
    assert to_event(message) == {"initial-response": {}}


def test_encoding_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match="64 bits"):
        encode_message({"n": 2**64})
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_message({"t": datetime.datetime(2026, 1, 1)})  # naive, on purpose
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        encode_message({"": "x"})
