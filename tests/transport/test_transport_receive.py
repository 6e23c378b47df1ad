"""The receiver's half of transport-wide congestion control: what a publisher stamps is noted as
it arrives and reported back to it in transport feedback (the server's uplink, and the synthetic
client's downlink, share ``ReceiveHistory``)."""

from __future__ import annotations

import pytest

from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.endpoint import Endpoint, EndpointListener
from sfu.transport.settings import MediaSettings
from sfu.transport.transportcc import MAX_PER_FEEDBACK, ReceiveHistory, SendHistory
from tests.transport.test_forwarder import Sink


def parsed(packets: list[bytes]) -> list[P.TransportFeedback]:
    out = []
    for packet in packets:
        [msg] = P.parse_rtcp(packet)
        assert isinstance(msg, P.TransportFeedback)
        out.append(msg)
    return out


def test_reports_arrivals_and_losses_once_and_unwraps_sequence_numbers():
    history = ReceiveHistory(0x1234)
    assert history.feedback(9) == []
    history.add(0xFFFE, 1.000)
    history.add(0x0001, 1.002)  # 0xFFFF and 0x0000 missing
    history.add(0xFFFD, 1.003)  # reordered, before the first report: still reported
    history.add(0xFFFD, 1.004)  # a duplicate counts once
    [first] = parsed(history.feedback(9))
    assert (first.sender_ssrc, first.media_ssrc, first.base_seq, first.fb_count) == (0x1234, 9, 0xFFFD, 0)
    assert [t is None for _, t in first.arrivals()] == [False, False, True, True, False]
    times = [t for _, t in first.arrivals() if t is not None]
    assert times == pytest.approx([1.003, 1.000, 1.002], abs=0.00025)
    history.add(0xFFFF, 1.010)  # too late: reported lost already
    assert history.feedback(9) == []
    history.add(0x0002, 1.100)
    [second] = parsed(history.feedback(9))
    assert (second.base_seq, len(second.deltas), second.fb_count) == (2, 1, 1)
    assert history.packets == 2 and history.late == 2


def test_long_reports_are_split_and_an_eight_second_gap_starts_a_new_packet():
    history = ReceiveHistory(1)
    for seq in range(MAX_PER_FEEDBACK + 5):
        history.add(seq, 1.0 + seq / 10_000)
    history.add(MAX_PER_FEEDBACK + 5, 20.0)  # 19 s later: no 16-bit delta reaches it
    messages = parsed(history.feedback(2))
    assert [(m.base_seq, len(m.deltas)) for m in messages] == [
        (0, MAX_PER_FEEDBACK), (MAX_PER_FEEDBACK, 5), (MAX_PER_FEEDBACK + 5, 1)]
    assert [m.fb_count for m in messages] == [0, 1, 2]
    assert messages[2].arrivals()[0][1] == pytest.approx(20.0, abs=0.00025)


def test_a_sender_that_built_the_feedback_matches_it_to_what_it_sent():
    """The two halves together, as the synthetic client and the server use them."""
    sent, received = SendHistory(), ReceiveHistory(7)
    for i in range(300):
        n = sent.record(1000, 5.0 + i * 0.004)
        if i % 10 != 3:  # every tenth packet lost
            received.add(n & 0xFFFF, 100.0 + i * 0.004 + 0.02)
    results = [r for packet in parsed(received.feedback(1)) for r in sent.match(packet)]
    # (seq, sent at, size, arrival or None)
    assert [r[0] for r in results] == list(range(1, 301))
    assert sum(r[3] is None for r in results) == 30
    one_way = {round(r[3] - r[1], 3) for r in results if r[3] is not None}
    assert one_way == {95.02}


# --- the server: feedback on what a publisher stamps ------------------------------------------


def stamped(seq: int, ssrc: int = 111, value: bytes | None = None) -> bytes:
    ext = P.ext_block(P.ext_element(5, value if value is not None else seq.to_bytes(2, "big")))
    return P.build_rtp(0, False, 97, seq, seq * 3000, ssrc, ext, b"\x10\x00frame")


async def test_endpoint_reports_what_arrived_stamped_and_counts_what_is_malformed():
    counters = Counters()
    endpoint = Endpoint("e1", MediaSettings(), EndpointListener(), counters)
    sink = Sink()
    wire, endpoint.peer.wire = endpoint.peer.wire, sink  # type: ignore[assignment]
    try:
        endpoint._on_rtp(stamped(1), 1.0)  # not negotiated yet: nothing noted
        endpoint._apply_transport_cc_in(5)  # what an answer that accepts it does
        for seq in (2, 3, 5):
            endpoint._on_rtp(stamped(seq), 1.0 + seq / 100)
        endpoint._on_rtp(stamped(6, value=b"\x01"), 1.1)  # one byte: not a sequence number
        endpoint._on_rtp(b"\x80" * 5, 1.1)  # not even RTP
        endpoint.send_transport_feedback()
        [fb] = parsed(sink.rtcp)
        assert (fb.base_seq, [t is not None for _, t in fb.arrivals()]) == (2, [True, True, False, True])
        assert endpoint.twcc_in_packets == 4 and endpoint.feedback_sent == 1
        assert counters.dropped == {"malformed_transport_seq": 1, "malformed": 1, "unknown_ssrc": 5}
        endpoint.send_transport_feedback()  # nothing new: nothing sent
        assert len(sink.rtcp) == 1
    finally:
        endpoint.peer.wire = wire
        await endpoint.close()
    assert all(t.done() for t in endpoint._tasks)


@pytest.mark.parametrize("garbage", [
    # transport feedback whose status chunks run past the packet
    bytes.fromhex("8fcd0004" "00000001" "00000002" "0005" "0100" "00000000"),
    # a reserved status symbol in a run
    bytes.fromhex("8fcd0005" "00000001" "00000002" "0005" "0001" "00000000" "60010000"),
    # feedback about sequence numbers never sent, behind a receiver report
    P.build_rr(P.ReceiverReport(1, [])) + P.build_transport_feedback(
        P.TransportFeedback(1, 2, 40_000, 5, 0, [4, None, 300])),
])
async def test_bad_transport_feedback_from_a_client_is_counted_and_dropped(garbage):
    counters = Counters()
    endpoint = Endpoint("e1", MediaSettings(), EndpointListener(), counters)
    heard: list[object] = []
    endpoint.listen_transport_feedback(lambda results, now: heard.append(results))
    endpoint._apply_transport_cc(5)
    try:
        endpoint._on_rtcp(garbage, 1.0)  # must not raise
        assert heard == []
        assert counters.dropped.get("malformed_rtcp", 0) + endpoint.twcc.unmatched >= 1
    finally:
        await endpoint.close()
