"""Transport-wide congestion control feedback (RTPFB FMT=15), as in
draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1, and as Chromium writes it."""

from __future__ import annotations

import random
import struct

import pytest

from sfu.transport import packets as P


def feedback(base_seq=100, deltas=None, reference_time=0x123456, fb_count=9):
    return P.TransportFeedback(0x11111111, 0x22222222, base_seq, reference_time, fb_count,
                               deltas if deltas is not None else [4, 8])


def chunks_of(data: bytes) -> list[int]:
    """The packet status chunks of a built feedback packet (enough for ``count`` statuses)."""
    fb = P.parse_rtcp(data)[0]
    assert isinstance(fb, P.TransportFeedback)
    out, covered, pos = [], 0, 20
    while covered < len(fb.deltas):
        (chunk,) = struct.unpack_from("!H", data, pos)
        out.append(chunk)
        pos += 2
        covered += chunk & 0x1FFF if not chunk & 0x8000 else (7 if chunk & 0x4000 else 14)
    return out


# Written by hand from the draft: 14 packets from sequence number 65534 (so it wraps), one
# status vector chunk of 1-bit symbols (the draft's example: 1|0|0 1 1 1 1 1 0 0 0 1 1 1 0 0),
# reference time 1 (64 ms), feedback count 5, then a one-byte delta for each of the 8 received.
HAND = bytes.fromhex(
    "af cd 00 07"  # V=2 P=1 FMT=15, PT=205, length 7 (32 bytes in all)
    "00 00 00 01"  # SSRC of packet sender
    "00 00 00 02"  # SSRC of media source
    "ff fe 00 0e"  # base sequence number 65534, packet status count 14
    "00 00 01 05"  # reference time 1, feedback packet count 5
    "9f 1c"  # status vector chunk, 1-bit symbols
    "04 04 04 04 04 50 01 02"  # 8 receive deltas (1 byte each, 250 µs units)
    "00 02"  # zero padding, the last byte saying 2 bytes of it
)


def test_a_hand_written_packet_parses_as_the_draft_says():
    (fb,) = P.parse_rtcp(HAND)
    assert fb == P.TransportFeedback(1, 2, 65534, 1, 5,
                                     [None, 4, 4, 4, 4, 4, None, None, None, 0x50, 1, 2, None, None])
    arrivals = fb.arrivals()
    assert [seq for seq, _ in arrivals] == [65534, 65535] + list(range(12))
    assert arrivals[0] == (65534, None)
    assert arrivals[1][1] == pytest.approx(0.064 + 0.001)
    assert arrivals[5][1] == pytest.approx(0.064 + 0.005)
    assert arrivals[9][1] == pytest.approx(0.064 + 0.005 + 0.020)  # 0x50 ticks = 20 ms
    assert arrivals[11][1] == pytest.approx(0.064 + 0.005 + 0.020 + 0.00075)


def test_the_builder_writes_the_hand_written_packet_byte_for_byte():
    (fb,) = P.parse_rtcp(HAND)
    assert P.build_transport_feedback(fb) == HAND


def test_round_trip_keeps_everything():
    fb = feedback(base_seq=65530, deltas=[4, None, 300, -5, 0, None] + [1] * 20, fb_count=255)
    data = P.build_transport_feedback(fb)
    assert len(data) % 4 == 0
    assert P.parse_rtcp(data) == [fb]


def test_random_round_trips():
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 400)
        deltas: list[int | None] = []
        for _ in range(n):
            r = rng.random()
            deltas.append(None if r < 0.2 else rng.randint(0, 255) if r < 0.9
                          else rng.randint(-32768, 32767))
        deltas[0] = rng.randint(0, 255)  # Chromium's base sequence number is a received packet
        fb = feedback(base_seq=rng.randint(0, 0xFFFF), deltas=deltas,
                      reference_time=rng.randint(0, 0xFFFFFF), fb_count=rng.randint(0, 255))
        assert P.parse_rtcp(P.build_transport_feedback(fb)) == [fb]


def test_a_run_of_same_statuses_is_one_run_length_chunk():
    data = P.build_transport_feedback(feedback(deltas=[1] * 221))
    assert chunks_of(data) == [0x20DD]  # the draft's example: a run of 221 "received, small delta"
    # as libwebrtc: a vector fills up first (14 one-bit symbols), then the rest of the losses
    # is one run, the received packets another
    data = P.build_transport_feedback(feedback(deltas=[3] + [None] * 1000 + [3] * 7))
    assert chunks_of(data) == [0x8000 | 1 << 13, 987, 0x2000 | 7]


def test_mixed_small_deltas_use_one_bit_vectors_and_large_ones_two_bit_vectors():
    small = [1, None] * 7
    assert chunks_of(P.build_transport_feedback(feedback(deltas=small))) == [0xAAAA]
    large = [1, 300, None, -1, 1, 1, 1]
    assert chunks_of(P.build_transport_feedback(feedback(deltas=large))) == [
        0xC000 | 0b01_10_00_10_01_01_01]
    (fb,) = P.parse_rtcp(P.build_transport_feedback(feedback(deltas=large)))
    assert isinstance(fb, P.TransportFeedback) and fb.deltas == large


def test_negative_deltas_move_arrival_times_back():
    fb = feedback(deltas=[40, -8, 4], reference_time=10)
    (parsed,) = P.parse_rtcp(P.build_transport_feedback(fb))
    assert isinstance(parsed, P.TransportFeedback)
    times = [t for _, t in parsed.arrivals()]
    assert times == pytest.approx([0.640 + 0.010, 0.640 + 0.008, 0.640 + 0.009])


def test_sequence_numbers_wrap():
    fb = feedback(base_seq=65535, deltas=[1, 1, None, 1])
    (parsed,) = P.parse_rtcp(P.build_transport_feedback(fb))
    assert isinstance(parsed, P.TransportFeedback)
    assert [seq for seq, _ in parsed.arrivals()] == [65535, 0, 1, 2]


def test_truncated_packets_raise_value_error():
    data = P.build_transport_feedback(feedback(deltas=[300, 1, None, 2] * 10))
    body = data[4:]
    for cut in range(4, len(body), 4):  # a length that leaves out chunks or deltas
        short = struct.pack("!BBH", 0x8F, 205, cut // 4) + body[:cut]
        with pytest.raises(ValueError):
            P.parse_rtcp(short)
    with pytest.raises(ValueError):
        P.parse_rtcp(data[:-4])  # the length says more than the datagram holds


@pytest.mark.parametrize("fci", [
    "0064 0000 00000001",  # no packet status at all
    "0064 0001 00000001 6001 0000",  # a run of the reserved status
    "0064 0001 00000001 f000 0000",  # a two-bit vector starting with the reserved status
])
def test_invalid_statuses_raise_value_error(fci):
    body = bytes.fromhex("00000001 00000002" + fci.replace(" ", ""))
    with pytest.raises(ValueError):
        P.parse_rtcp(struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body)


def test_bad_padding_raises_value_error():
    data = bytearray(HAND)
    data[-1] = 40  # more padding than the packet holds
    with pytest.raises(ValueError):
        P.parse_rtcp(bytes(data))


def test_the_builder_refuses_what_the_format_cannot_carry():
    with pytest.raises(ValueError):
        P.build_transport_feedback(feedback(deltas=[1, 40000]))
    with pytest.raises(ValueError):
        P.build_transport_feedback(feedback(deltas=[]))


def test_feedback_in_a_compound_with_a_receiver_report():
    fb = feedback()
    data = P.build_rr(P.ReceiverReport(7, [])) + P.build_transport_feedback(fb) + P.build_remb(7, 1000, [])
    msgs = P.parse_rtcp(data)
    assert msgs[1] == fb and isinstance(msgs[2], P.Remb)
