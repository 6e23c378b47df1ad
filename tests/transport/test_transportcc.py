"""The sender's half of transport-wide congestion control: one sequence per endpoint on every
packet sent, a bounded history of what was sent, feedback matched against it and delivered."""

from __future__ import annotations

import pytest
from aiortc import sdp as aiortc_sdp

from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.endpoint import Endpoint, EndpointListener
from sfu.transport.forwarder import Consumer, OutStream
from sfu.transport.peer import PUBLISHING, accepted_transport_cc
from sfu.transport.settings import MediaSettings
from sfu.transport.transportcc import HISTORY_SIZE, PacketResult, SendHistory
from tests.transport.test_forwarder import Sink, producer, vp8


def twcc_seq(wire: bytes, ext_id: int = 5) -> int:
    return int.from_bytes(P.parse_rtp(wire).ext[ext_id], "big")


def fb(base_seq: int, deltas: list[int | None], reference_time: int = 100) -> P.TransportFeedback:
    return P.TransportFeedback(1, 2, base_seq, reference_time, 0, deltas)


def test_history_matches_feedback_with_send_times_sizes_and_arrivals():
    history = SendHistory()
    for i in range(5):
        history.record(1000 + i, 10.0 + i / 100)
    results = history.match(fb(2, [40, None, 4]))
    # (seq, send time, size, arrival): plain tuples
    assert [r[:3] for r in results] == [(2, 10.01, 1001), (3, 10.02, 1002), (4, 10.03, 1003)]
    assert results[0][3] == pytest.approx(6.4 + 0.010)
    assert results[1][3] is None
    assert results[2][3] == pytest.approx(6.4 + 0.011)


def test_history_unwraps_sixteen_bit_sequence_numbers_and_forgets_the_oldest():
    history = SendHistory()
    for i in range(70000):
        history.record(100, i * 0.001)
    assert history.count == 70000
    wire_seq = 69990 & 0xFFFF
    results = history.match(fb(wire_seq, [1] * 10))
    assert [r[0] for r in results] == list(range(69990, 70000))
    assert results[0][1] == pytest.approx(69.989)
    old = history.match(fb((70000 - HISTORY_SIZE - 5) & 0xFFFF, [1] * 10))
    assert [r[0] for r in old] == list(range(70000 - HISTORY_SIZE + 1, 70000 - HISTORY_SIZE + 5))
    assert history.unmatched == 6
    assert SendHistory().match(fb(65535, [1, 1])) == []  # nothing sent yet: nothing to match


def test_reference_time_is_unwrapped_across_feedback_packets():
    history = SendHistory()
    history.record(100, 0.0)
    history.record(100, 0.1)
    (first,) = history.match(fb(1, [0], reference_time=0xFFFFFF))
    (second,) = history.match(fb(2, [0], reference_time=1))
    assert second[3] - first[3] == pytest.approx(2 * 0.064)  # type: ignore[operator]


def test_every_packet_to_an_endpoint_carries_the_next_sequence_number_across_streams():
    sink = Sink()
    history = SendHistory(ext_id=7)
    video = OutStream(ssrc=555, mid="2", kind="video", sink=sink, clock_rate=90000, pt_map={},
                      twcc=history)
    other = OutStream(ssrc=556, mid="3", kind="video", sink=sink, clock_rate=90000, pt_map={},
                      twcc=history)
    a, b = producer(ssrc=1), producer(ssrc=2)
    ca = Consumer(a, video, Counters())
    Consumer(b, other, Counters())
    for i in range(3):
        a.on_rtp(vp8(10 + i, 3000, key=i == 0, ssrc=1), 1.0 + i)
        b.on_rtp(vp8(70 + i, 3000, key=i == 0, ssrc=2), 1.5 + i)
    assert [twcc_seq(w, 7) for w in sink.rtp] == [1, 2, 3, 4, 5, 6]
    assert all(P.parse_rtp(w).ext[1] in (b"2", b"3") for w in sink.rtp)  # mid still there
    assert ca.retransmit(P.parse_rtp(sink.rtp[0]).seq, 9.0)  # a retransmission is a new packet
    assert twcc_seq(sink.rtp[-1], 7) == 7
    results = history.match(fb(1, [1] * 7))
    assert [r[1] for r in results] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 9.0]
    assert [r[2] for r in results] == [len(w) for w in sink.rtp]


def test_without_transport_cc_packets_carry_no_sequence_number():
    sink = Sink()
    out = OutStream(ssrc=555, mid="2", kind="video", sink=sink, clock_rate=90000, pt_map={})
    prod = producer()
    Consumer(prod, out, Counters())
    prod.on_rtp(vp8(1, 0, key=True), 0.0)
    assert set(P.parse_rtp(sink.rtp[0]).ext) == {1, 3}


async def test_endpoint_delivers_matched_feedback_while_negotiated_until_it_closes():
    sink = Sink()
    endpoint = Endpoint("e1", MediaSettings(), EndpointListener(), Counters())
    out = OutStream(ssrc=555, mid="2", kind="video", sink=sink, clock_rate=90000, pt_map={})
    endpoint.out_by_ssrc[555] = out  # as subscribe() would, without negotiating
    heard: list[tuple[list[PacketResult], float]] = []
    endpoint.listen_transport_feedback(lambda results, now: heard.append((results, now)))
    assert not endpoint.transport_cc
    endpoint._apply_transport_cc(5)  # what an answer that accepts it does
    assert endpoint.transport_cc and out.twcc is endpoint.twcc
    prod = producer()
    Consumer(prod, out, Counters())
    prod.on_rtp(vp8(1, 0, key=True), 0.5)
    prod.on_rtp(vp8(2, 3000), 0.6)
    endpoint._on_rtcp(P.build_transport_feedback(fb(1, [4, None])), 0.7)
    assert heard == [([(1, 0.5, len(sink.rtp[0]), pytest.approx(6.401)),
                       (2, 0.6, len(sink.rtp[1]), None)], 0.7)]
    endpoint._apply_transport_cc(None)  # a later answer without it: packets go without
    assert not endpoint.transport_cc and out.twcc is None
    endpoint._apply_transport_cc(5)
    await endpoint.close()
    endpoint._on_rtcp(P.build_transport_feedback(fb(1, [4, 4])), 0.8)
    assert len(heard) == 1


CHROME_LIKE = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1 2\r
m=audio 9 UDP/TLS/RTP/SAVPF 96\r
c=IN IP4 0.0.0.0\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a={d0}\r
a=rtpmap:96 opus/48000/2\r
m=video 9 UDP/TLS/RTP/SAVPF 97\r
c=IN IP4 0.0.0.0\r
a=mid:1\r
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r
{ext1}a={d1}\r
a=rtpmap:97 VP8/90000\r
m=video 9 UDP/TLS/RTP/SAVPF 97\r
c=IN IP4 0.0.0.0\r
a=mid:2\r
a=extmap:{id2} http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=recvonly\r
a=rtpmap:97 VP8/90000\r
"""
EXT5 = "a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"


@pytest.mark.parametrize(("d0", "d1", "ext1", "id2", "expected"), [
    ("sendonly", "recvonly", EXT5, 5, 5),  # accepted on every m-line the client receives on
    ("sendonly", "inactive", "", 5, 5),  # an inactive m-line need not carry it
    ("sendonly", "sendonly", "", 5, 5),  # nor one the client publishes on (told apart below)
    ("sendonly", "recvonly", "", 5, None),  # a receiving m-line without it
    ("sendonly", "recvonly", EXT5, 6, None),  # two ids for one transport-wide sequence
])
def test_the_answer_says_whether_transport_cc_is_used(d0, d1, ext1, id2, expected):
    sdp = CHROME_LIKE.format(d0=d0, d1=d1, ext1=ext1, id2=id2)
    assert accepted_transport_cc(aiortc_sdp.SessionDescription.parse(sdp)) == expected


def test_history_matches_the_same_across_the_ring_end_with_and_without_losses():
    """match has a fast path (all received, one stretch of the ring) and a general loop: a
    feedback straddling the ring's end, and the same with one loss, agree with each other."""
    history = SendHistory()
    for i in range(HISTORY_SIZE + 10):
        history.record(100 + i % 7, i * 0.001)
    base = HISTORY_SIZE - 5  # slots HISTORY_SIZE - 5 .. HISTORY_SIZE + 4 wrap around
    straddling = history.match(fb(base & 0xFFFF, [4] * 10))
    inside = history.match(fb(100, [4] * 10))
    lossy = history.match(fb(base & 0xFFFF, [4] * 5 + [None] + [4] * 4))
    assert [r[0] for r in straddling] == list(range(base, base + 10))
    # packet n (the first is 1) was the (n-1)th recorded
    assert [r[1:3] for r in straddling] == [((base + k - 1) * 0.001, 100 + (base + k - 1) % 7)
                                            for k in range(10)]
    assert [r[1:3] for r in inside] == [((99 + k) * 0.001, 100 + (99 + k) % 7) for k in range(10)]
    assert [r[3] for r in straddling][:5] == [r[3] for r in lossy][:5]
    assert lossy[5][3] is None and lossy[6][3] == straddling[5][3]


@pytest.mark.parametrize(("d0", "d1", "ext1", "expected"), [
    ("sendonly", "recvonly", EXT5, 5),  # the one m-line it publishes on carries it
    ("sendonly", "sendonly", EXT5, 5),  # both
    ("sendonly", "sendonly", "", None),  # a publishing m-line without it: no feedback
    ("inactive", "inactive", EXT5, None),  # publishes nothing
])
def test_the_answer_says_whether_the_client_stamps_what_it_publishes(d0, d1, ext1, expected):
    sdp = CHROME_LIKE.format(d0=d0, d1=d1, ext1=ext1, id2=5)
    parsed = aiortc_sdp.SessionDescription.parse(sdp)
    assert accepted_transport_cc(parsed, PUBLISHING) == expected
