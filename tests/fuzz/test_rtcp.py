"""Fuzzing RTCP (sfu/transport/packets.py ``parse_rtcp``): SR, RR, SDES (skipped), BYE, NACK,
transport-wide feedback, PLI, FIR and REMB, alone and in compounds; what the server builds parses
back; and the two readers behind the parser, the server's endpoint and the synthetic client,
take any compound a peer sends."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from sfu.client.client import Client, TrackStats
from sfu.transport import packets as P
from sfu.transport.transportcc import ReceiveHistory, SendHistory
from tests.fuzz.budget import budget
from tests.fuzz.rtp_targets import AUDIO, VIDEO, publishing_endpoint
from tests.fuzz.strategies import Rtp, mutated, rtp_packets, u8, u16, u32

blocks = st.builds(P.ReportBlock, u32, u8, st.integers(-(1 << 23), (1 << 23) - 1), u32, u32,
                   u32, u32)
srs = st.builds(P.SenderReport, u32, st.integers(0, (1 << 64) - 1), u32, u32, u32,
                st.lists(blocks, max_size=31))
rrs = st.builds(P.ReceiverReport, u32, st.lists(blocks, max_size=31))
plis = st.builds(P.Pli, u32, u32)
nacks = st.builds(P.Nack, u32, u32, st.lists(u16, min_size=1, max_size=40, unique=True))
rembs = st.builds(P.Remb, u32, st.integers(0, (1 << 18) << 20), st.lists(u32, max_size=8))
firs = st.builds(P.Fir, u32, st.lists(u32, max_size=6))
byes = st.builds(P.Bye, st.lists(u32, max_size=31))
deltas = st.lists(st.one_of(st.none(), st.integers(0, 0xFF), st.integers(-0x8000, 0x7FFF)),
                  min_size=1, max_size=300)
feedbacks = st.builds(P.TransportFeedback, u32, u32, u16, st.integers(0, 0xFFFFFF), u8, deltas)


def build(message: P.RtcpMessage) -> bytes:
    """Each message as a peer would send it: the server's own builders where it has one."""
    if isinstance(message, P.SenderReport):
        return P.build_sr(message)
    if isinstance(message, P.ReceiverReport):
        return P.build_rr(message)
    if isinstance(message, P.Pli):
        return P.build_pli(message.sender_ssrc, message.media_ssrc)
    if isinstance(message, P.Nack):
        return P.build_nack(message.sender_ssrc, message.media_ssrc, message.lost)
    if isinstance(message, P.Remb):
        return P.build_remb(message.sender_ssrc, message.bitrate, message.ssrcs)
    if isinstance(message, P.TransportFeedback):
        return P.build_transport_feedback(message)
    if isinstance(message, P.Fir):  # RFC 5104: FCI of (SSRC, seq nr, 3 reserved bytes)
        fci = b"".join(struct.pack("!IB3x", s, i & 0xFF) for i, s in enumerate(message.media_ssrcs))
        return struct.pack("!BBHII", 0x84, P.RTCP_PSFB, 2 + len(fci) // 4, 0, 0) + fci
    assert isinstance(message, P.Bye)
    body = b"".join(struct.pack("!I", s) for s in message.ssrcs)
    return struct.pack("!BBH", 0x80 | len(message.ssrcs), P.RTCP_BYE, len(body) // 4) + body


def expected(message: P.RtcpMessage) -> P.RtcpMessage:
    """What parsing ``build(message)`` gives: a NACK's list comes back sorted, a REMB's
    bitrate keeps the 18 bits of mantissa the wire has room for."""
    if isinstance(message, P.Nack):
        return P.Nack(message.sender_ssrc, message.media_ssrc, sorted(message.lost))
    if isinstance(message, P.Remb):
        exp = max(0, message.bitrate.bit_length() - 18)
        return P.Remb(message.sender_ssrc, message.bitrate >> exp << exp, message.ssrcs)
    if isinstance(message, P.Fir):
        return P.Fir(0, message.media_ssrcs)
    return message


messages = st.one_of(srs, rrs, plis, nacks, rembs, firs, byes, feedbacks)
sdes = st.builds(P.build_sdes_cname, u32, st.text(max_size=40))
compounds = st.lists(st.one_of(messages.map(build), sdes), min_size=1, max_size=6).map(b"".join)


def any_rtcp() -> st.SearchStrategy[bytes]:
    """Valid compounds, mutations of them, and bytes that start like RTCP."""
    return st.one_of(compounds, compounds.flatmap(mutated),
                     st.tuples(st.integers(0x80, 0xBF), st.integers(192, 223),
                               st.binary(max_size=80)).map(lambda t: bytes(t[:2]) + t[2]),
                     st.binary(max_size=60))


def parsed_or_refused(data: bytes) -> list[P.RtcpMessage]:
    """The messages, or none when the parser refuses the bytes with its one error, ValueError."""
    try:
        return P.parse_rtcp(data)
    except ValueError:
        return []


@budget(300)
@given(st.lists(messages, min_size=1, max_size=6), st.lists(sdes, max_size=2))
def test_every_message_the_server_reads_parses_back_from_the_wire(sent, extra):
    wire = b"".join(build(m) for m in sent) + b"".join(extra)
    assert P.parse_rtcp(wire) == [expected(m) for m in sent]


@budget(200)
@given(any_rtcp())
def test_any_bytes_parse_or_raise_value_error(data):
    for message in parsed_or_refused(data):
        if isinstance(message, P.TransportFeedback):
            assert message.deltas and all(d is None or -0x8000 <= d <= 0x7FFF for d in message.deltas)
            message.arrivals()


@budget(200)
@given(feedbacks.flatmap(lambda fb: mutated(P.build_transport_feedback(fb))))
def test_mutated_transport_feedback_matches_or_raises_value_error(data):
    sent, received = SendHistory(), ReceiveHistory(1)
    for i in range(40):
        sent.record(1000, i / 100)
    for message in parsed_or_refused(data):
        if isinstance(message, P.TransportFeedback):
            for seq, _, _, _ in sent.match(message):
                assert 1 <= seq <= sent.count
                received.add(seq & 0xFFFF, seq / 100)
    received.feedback(1)


async def test_the_endpoint_takes_any_rtcp_a_peer_sends(no_traceback_logged):
    """Reports, NACKs (answered from the cache), PLI/FIR, REMB and transport feedback about
    what the endpoint sends, and the publisher's SRs: nothing raises, whatever the values."""
    endpoint, sink, _ = publishing_endpoint()
    heard: list[object] = []
    endpoint.listen_reports(lambda block, now, rtt: heard.append(block))
    endpoint.listen_remb(lambda bps, now: heard.append(bps))
    endpoint.listen_transport_feedback(lambda results, now: heard.append(results))
    for seq in range(30):  # a keyframe and more, forwarded: NACKs find them in the cache
        packet = Rtp(False, 96, seq, seq * 3000, VIDEO, payload=b"\x10\x00frame").wire()
        endpoint._on_rtp(packet, seq / 30)
    ssrcs = st.sampled_from([*endpoint.out_by_ssrc, AUDIO, VIDEO, 0])

    def about_ours(message: P.RtcpMessage, ssrc: int) -> P.RtcpMessage:
        for name in ("media_ssrc", "ssrc"):
            if hasattr(message, name):
                setattr(message, name, ssrc)
        for block in getattr(message, "reports", []):
            block.ssrc = ssrc
        return message

    ours = st.builds(about_ours, messages, ssrcs).map(build)
    compound = st.lists(ours, min_size=1, max_size=5).map(b"".join)

    clock = [1.0]

    @budget(150)
    @given(st.one_of(compound, compound.flatmap(mutated), any_rtcp()),
           st.one_of(st.floats(0, 2), st.floats(0, 1e5)))
    def feed(data, elapsed):
        clock[0] += elapsed  # a monotonic clock: the call goes on, maybe for a day
        endpoint._on_rtcp(data, clock[0])  # must not raise
        endpoint.rtcp_compound(clock[0])  # (the endpoint's RTCP timer)

    try:
        feed()
        assert heard and sink.rtp
    finally:
        await endpoint.close()
    assert not no_traceback_logged.records, no_traceback_logged.records


async def test_the_client_takes_any_rtp_and_rtcp_the_server_sends():
    client = Client("http://127.0.0.1:9", "token")
    client._ssrc_to_mid = {AUDIO: "0", VIDEO: "1"}
    client._rtx_ssrcs = {VIDEO + 1}
    client.tracks = {"0": TrackStats("0", kind="audio"), "1": TrackStats("1", kind="video")}
    client._twcc_id = 5
    client.twcc = ReceiveHistory(1)
    client.twcc_out = SendHistory()
    packets = st.builds(lambda p, ssrc: Rtp(p.marker, p.pt, p.seq, p.ts, ssrc, p.csrcs, p.ext,
                                            p.two_byte, p.payload, p.padding).wire(),
                        rtp_packets(), st.sampled_from([AUDIO, VIDEO, VIDEO + 1, 7]))

    @budget(100)
    @given(st.lists(st.one_of(packets, packets.flatmap(mutated), any_rtcp()), max_size=6),
           st.floats(0, 1e6))
    def feed(datagrams, now):
        for data in datagrams:
            if len(data) > 1 and 192 <= data[1] <= 223:
                client._on_rtcp(data, now)
            else:
                client._on_rtp(data, now)
        client.twcc.feedback(VIDEO)  # type: ignore[union-attr]

    feed()


async def test_a_publisher_sr_at_the_end_of_ntp_time_does_not_stop_its_subscribers_rtcp():
    """The SR sent to a subscriber is the publisher's NTP time moved on by the time since its
    SR: from an SR that said 2^64 - 1 it passed 64 bits and building it raised struct.error in
    the endpoint's RTCP timer (no more SR or RR for the rest of the call). 18.2 h after the
    last SR, the delay since it (DLSR) passed 32 bits in the receiver report the same way."""
    endpoint, _, _ = publishing_endpoint()
    try:
        for seq in range(3):
            endpoint._on_rtp(Rtp(False, 96, seq, seq * 3000, VIDEO, payload=b"\x10\x00k").wire(),
                             1.0)
        endpoint._on_rtcp(P.build_sr(P.SenderReport(VIDEO, (1 << 64) - 1, 0, 1, 1)), 1.0)
        compound = P.parse_rtcp(endpoint.rtcp_compound(2.0))
        srs = [m for m in compound if isinstance(m, P.SenderReport)]
        assert srs and all(sr.ntp == (1 << 32) - 1 for sr in srs)  # wrapped, one second on
        day = P.parse_rtcp(endpoint.rtcp_compound(1.0 + 86400))
        blocks = [b for m in day if isinstance(m, P.ReceiverReport) for b in m.reports]
        assert blocks and {b.dlsr for b in blocks if b.ssrc == VIDEO} == {0xFFFFFFFF}
    finally:
        await endpoint.close()
