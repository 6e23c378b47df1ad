"""Fuzzing what a peer's RTP carries (sfu/transport/packets.py): the fixed header, CSRCs,
padding, header extensions (one-byte and two-byte forms, abs-send-time, transport-wide sequence
number, mid, audio level), the VP8 payload descriptor, RTX; and the server's receive path
behind them (``Endpoint._on_rtp`` -> producers -> consumers), which must take any datagram."""

from __future__ import annotations

import dataclasses

from hypothesis import example, given
from hypothesis import strategies as st

from sfu.transport import packets as P
from tests.fuzz.budget import budget
from tests.fuzz.rtp_targets import AUDIO, OTHER, VIDEO, VIDEO_RTX, publishing_endpoint
from tests.fuzz.strategies import (
    Rtp,
    mutated,
    rtp_or_mutant,
    rtp_packets,
    u16,
    u32,
    vp8_descriptors,
)

# The one-byte-form element at the very end of a packet, its value cut off: parsed as an empty
# value, which the audio path copied into an element of its own (ValueError on the packet path).
EMPTY_TAIL_ELEMENT = bytes.fromhex("9000 0001 00000000 00000002" "bede0001" "00000021")


@budget(400)
@given(rtp_or_mutant())
@example(EMPTY_TAIL_ELEMENT)
def test_any_bytes_parse_or_raise_value_error_and_extensions_stay_in_their_block(data):
    try:
        packet = P.parse_rtp(data)
    except ValueError:
        return
    assert 12 <= packet.payload_offset <= len(data)
    for ext_id, value in packet.ext.items():
        assert 1 <= ext_id <= 14 and 1 <= len(value) <= 16, (ext_id, value)
        assert data.find(value, 12, packet.payload_offset) >= 0  # inside the header
    assert P.parse_header(data) == (packet.pt, packet.seq, packet.ts, packet.ssrc,
                                    packet.payload_offset)


@budget(300)
@given(rtp_packets())
def test_valid_packets_parse_to_what_was_sent(sent: Rtp):
    data = sent.wire()
    packet = P.parse_rtp(data)
    assert (packet.marker, packet.pt, packet.seq, packet.ts, packet.ssrc) == (
        sent.marker, sent.pt, sent.seq, sent.ts, sent.ssrc)
    assert packet.ext == (sent.ext if sent.two_byte is None else {})
    padding = b"\x00" * (sent.padding - 1) + bytes((sent.padding,)) if sent.padding else b""
    assert packet.payload == sent.payload + padding
    assert P.parse_header(data)[4] == packet.payload_offset


@budget(300)
@given(rtp_packets().flatmap(lambda p: mutated(p.wire())))
def test_mutated_packets_never_raise_anything_but_value_error(data):
    try:
        P.parse_rtp(data)
    except ValueError:
        pass
    try:
        P.parse_header(data)
    except ValueError:
        pass


@budget(300)
@given(st.booleans(), st.integers(0, 127), u16, u32, u32,
       st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=12),
       st.binary(max_size=64), u16)
def test_what_the_server_builds_parses_back(marker, pt, seq, ts, ssrc, ext, body, twcc_seq):
    elements = b"".join(P.ext_element(i, v) for i, v in ext.items())
    packet = P.parse_rtp(P.build_rtp(0, marker, pt, seq, ts, ssrc, P.ext_block(elements), body))
    assert (packet.marker, packet.pt, packet.seq, packet.ts, packet.ssrc, packet.ext,
            packet.payload) == (marker, pt, seq, ts, ssrc, ext, body)
    # the transport-wide sequence number goes last, in the same block (id 15 is reserved)
    shared = P.ext_element(3, P.abs_send_time(ts / 1000))
    ext.pop(5, None)
    ext.pop(3, None)
    elements = b"".join(P.ext_element(i, v) for i, v in ext.items())
    block = P.ext_block_twcc(elements, shared, 5 << 4 | 1, twcc_seq)
    packet = P.parse_rtp(P.build_rtp(0, marker, pt, seq, ts, ssrc, block, body))
    assert packet.ext == {**ext, 3: shared[1:], 5: twcc_seq.to_bytes(2, "big")}
    assert packet.payload == body


@budget(300)
@given(vp8_descriptors(), st.binary(max_size=20))
def test_vp8_descriptor_start_and_keyframe(descriptor, header):
    payload, start, key = descriptor
    assert P.vp8_frame_info(payload) == (start, key)
    assert P.vp8_frame_info(header + payload, len(header)) == (start, key)


@budget(300)
@given(st.one_of(vp8_descriptors().flatmap(lambda d: mutated(d[0])), st.binary(max_size=24)),
       st.integers(0, 30))
def test_vp8_descriptor_of_any_bytes_never_raises(payload, offset):
    start, key = P.vp8_frame_info(payload, offset)
    assert isinstance(start, bool) and isinstance(key, bool) and (start or not key)
    assert P.vp8_frame_info(memoryview(payload), offset) == (start, key)


@budget(300)
@given(rtp_packets(), u16, u32, st.integers(0, 127))
def test_rtx_unwraps_to_the_original(original: Rtp, rtx_seq, rtx_ssrc, rtx_pt):
    original = dataclasses.replace(original, padding=0, csrcs=[], two_byte=None,
                                   payload=original.payload or b"\x10")
    rtx = dataclasses.replace(original, seq=rtx_seq, ssrc=rtx_ssrc, pt=rtx_pt,
                              payload=original.seq.to_bytes(2, "big") + original.payload,
                              padding=3)
    unwrapped = P.unwrap_rtx(P.parse_rtp(rtx.wire()), original.pt, original.ssrc)
    expected = P.parse_rtp(original.wire())
    assert (unwrapped.seq, unwrapped.ts, unwrapped.ssrc, unwrapped.pt, unwrapped.marker,
            unwrapped.ext, unwrapped.payload) == (expected.seq, expected.ts, expected.ssrc,
                                                  expected.pt, expected.marker, expected.ext,
                                                  expected.payload)


@budget(300)
@given(rtp_or_mutant())
def test_rtx_of_any_packet_unwraps_or_raises_value_error(data):
    try:
        packet = P.parse_rtp(data)
        P.unwrap_rtx(packet, 97, 111)
    except ValueError:
        pass


# -- the receive path of a real endpoint --------------------------------------------------------


def incoming() -> st.SearchStrategy[bytes]:
    """What a publisher may send: its streams' packets with VP8 payloads and any extensions
    (transport-wide numbers and audio levels of any length), RTX, and mutations of these."""
    def on(ssrc: int, packet: Rtp, payload: bytes, osn: int) -> Rtp:
        if ssrc == VIDEO_RTX:
            payload = osn.to_bytes(2, "big") + payload
        return dataclasses.replace(packet, ssrc=ssrc, payload=payload)

    ext = st.dictionaries(st.sampled_from([1, 2, 3, 5, 9]), st.binary(min_size=1, max_size=16),
                          max_size=5)
    packets = st.builds(on, st.sampled_from([AUDIO, VIDEO, VIDEO, VIDEO_RTX, OTHER]),
                        rtp_packets().flatmap(lambda p: ext.map(
                            lambda e: dataclasses.replace(p, ext=e, two_byte=None))),
                        vp8_descriptors().map(lambda d: d[0]), u16).map(Rtp.wire)
    return st.one_of(packets, packets.flatmap(mutated), st.binary(max_size=40))


async def test_the_receive_path_takes_any_packet_a_publisher_sends(no_traceback_logged):
    endpoint, sink, counters = publishing_endpoint()
    seen = {"packets": 0}

    clock = [1.0]

    @budget(120)
    @given(st.lists(incoming(), min_size=1, max_size=8), st.one_of(st.floats(0, 1), st.floats(0, 1e5)))
    @example([EMPTY_TAIL_ELEMENT.replace(b"\x00\x00\x00\x02", AUDIO.to_bytes(4, "big"))], 0.0)
    def feed(datagrams, elapsed):
        clock[0] += elapsed  # monotonic, as the endpoint's clock is
        for data in datagrams:
            endpoint._on_rtp(data, clock[0])  # must not raise
            seen["packets"] += 1
        endpoint.rtcp_compound(clock[0])
        endpoint.send_transport_feedback()
        for producer in endpoint.producers.values():
            producer.take_arrivals()
            producer.take_audio_level()

    try:
        feed()
        assert seen["packets"] and sink.rtp and counters.dropped.get("malformed", 0) > 0
    finally:
        await endpoint.close()
    assert not no_traceback_logged.records, no_traceback_logged.records
