"""The forwarding core, packet by packet, with a recording sink and a fake clock."""

from __future__ import annotations

from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.forwarder import ARRIVALS_MAX, Arrival, Consumer, OutStream, Producer


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.up = True

    def ready(self) -> bool:
        return self.up

    def send_rtp(self, data: bytes) -> None:
        self.rtp.append(data)

    def send_rtcp(self, data: bytes) -> None:
        self.rtcp.append(data)


class Timers:
    def __init__(self) -> None:
        self.pending: list[tuple[float, object]] = []

    def defer(self, delay, fn):
        self.pending.append((delay, fn))


def producer(kind="video", ssrc=111, feedback=None, timers=None, counters=None):
    return Producer(producer_id="p", owner="alice", kind=kind, clock_rate=90000 if kind == "video" else 48000,
                    ssrc=ssrc, payload_type=97 if kind == "video" else 96, feedback=feedback or Sink(),
                    rtcp_ssrc=9, counters=counters or Counters(), defer=(timers or Timers()).defer,
                    ext_ids={"mid": 1, "abs_send_time": 3, "audio_level": 2})


def vp8(seq, ts, key=False, start=True, ssrc=111):
    desc = b"\x10" if start else b"\x00"
    body = desc + (b"\x00" if key else b"\x01") + b"frame"
    return P.parse_rtp(P.build_rtp(0, False, 97, seq, ts, ssrc, b"", body))


def out_stream(sink, ssrc=555, mid="4"):
    return OutStream(ssrc=ssrc, mid=mid, kind="video", sink=sink, clock_rate=90000, pt_map={97: 100})


def test_video_consumer_waits_for_a_keyframe_then_rewrites_ssrc_pt_and_mid():
    sink = Sink()
    prod = producer()
    out = out_stream(sink)
    Consumer(prod, out, Counters())
    prod.on_rtp(vp8(10, 1000), 0.0)  # delta frame: held back
    prod.on_rtp(vp8(11, 4000, key=True), 0.1)
    prod.on_rtp(vp8(12, 4000, start=False), 0.1)
    assert len(sink.rtp) == 2
    first, second = (P.parse_rtp(d) for d in sink.rtp)
    assert first.ssrc == 555 and first.pt == 100 and first.ext[1] == b"4"
    assert (second.seq - first.seq) & 0xFFFF == 1 and second.ts == first.ts
    assert 3 in first.ext  # abs-send-time restamped by the server
    assert first.payload == vp8(11, 4000, key=True).payload  # payload untouched


def test_switching_source_keeps_sequence_and_timestamps_continuous():
    sink = Sink()
    out = out_stream(sink)
    a, b = producer(ssrc=1), producer(ssrc=2)
    ca = Consumer(a, out, Counters())
    for i in range(5):
        a.on_rtp(vp8(100 + i, 3000 * i, key=(i == 0), ssrc=1), i / 30)
    ca.close()
    Consumer(b, out, Counters())
    b.on_rtp(vp8(40000, 777, key=True, ssrc=2), 5 / 30)
    b.on_rtp(vp8(40001, 3777, ssrc=2), 6 / 30)
    seqs = [P.parse_rtp(d).seq for d in sink.rtp]
    tss = [P.parse_rtp(d).ts for d in sink.rtp]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(7))
    assert all(((t2 - t1) & 0xFFFFFFFF) < 0x80000000 and t2 != t1 for t1, t2 in zip(tss[4:], tss[5:], strict=False))


def test_nack_is_answered_from_the_cache_with_the_same_outgoing_numbers():
    sink = Sink()
    prod = producer()
    consumer = Consumer(prod, out_stream(sink), Counters())
    for i in range(4):
        prod.on_rtp(vp8(200 + i, 100 + i, key=(i == 0)), 0.0)
    lost = P.parse_rtp(sink.rtp[2])
    assert consumer.retransmit(lost.seq, 1.0)
    again = P.parse_rtp(sink.rtp[-1])
    assert (again.seq, again.ts, again.ssrc, again.payload) == (lost.seq, lost.ts, lost.ssrc, lost.payload)
    assert not consumer.retransmit((lost.seq + 1000) & 0xFFFF, 1.0)


def test_a_packet_asked_for_again_at_once_or_a_fourth_time_is_not_resent():
    sink = Sink()
    prod = producer()
    counters = Counters()
    consumer = Consumer(prod, out_stream(sink), counters)
    for i in range(4):
        prod.on_rtp(vp8(200 + i, 100 + i, key=(i == 0)), 0.0)
    seq = P.parse_rtp(sink.rtp[2]).seq
    sent = len(sink.rtp)
    assert consumer.retransmit(seq, 1.0, rtt=0.2)
    assert not consumer.retransmit(seq, 1.05, rtt=0.2)  # within 100 ms: the first is on its way
    assert consumer.retransmit(seq, 1.11, rtt=0.2)
    assert consumer.retransmit(seq, 1.122, rtt=0.005)  # a short RTT: 2 x RTT is the wait
    assert not consumer.retransmit(seq, 5.0, rtt=0.005)  # three times is enough
    assert len(sink.rtp) == sent + 3
    assert (counters.retransmitted, counters.retransmits_suppressed) == (3, 2)
    other = P.parse_rtp(sink.rtp[1]).seq
    assert consumer.retransmit(other, 5.0)  # another packet is another matter


def test_keyframe_requests_are_rate_limited_per_publisher_stream():
    feedback, timers = Sink(), Timers()
    prod = producer(feedback=feedback, timers=timers)
    prod.request_keyframe(10.0)
    prod.request_keyframe(10.2)
    prod.request_keyframe(10.5)
    assert len(feedback.rtcp) == 1 and len(timers.pending) == 1
    delay, fire = timers.pending[0]
    assert abs(delay - 0.8) < 1e-6
    fire(11.0)
    assert len(feedback.rtcp) == 2
    assert isinstance(P.parse_rtcp(feedback.rtcp[0])[0], P.Pli)


def test_paused_consumer_sends_nothing_and_resumes_on_a_keyframe_without_a_gap():
    sink = Sink()
    prod = producer()
    consumer = Consumer(prod, out_stream(sink), Counters())
    prod.on_rtp(vp8(1, 0, key=True), 0.0)
    consumer.set_paused(True, 0.1)
    prod.on_rtp(vp8(2, 3000), 0.1)
    consumer.set_paused(False, 1.0)
    prod.on_rtp(vp8(3, 6000), 1.0)  # not a keyframe, and the cached one is too old: waiting
    prod.on_rtp(vp8(4, 9000, key=True), 1.1)
    seqs = [P.parse_rtp(d).seq for d in sink.rtp]
    assert len(seqs) == 2 and (seqs[1] - seqs[0]) & 0xFFFF == 1


def test_sender_report_translates_the_publishers_mapping():
    sink = Sink()
    prod = producer()
    out = out_stream(sink)
    Consumer(prod, out, Counters())
    assert out.sender_report(0.0) is None  # nothing sent, no mapping yet
    prod.on_rtp(vp8(1, 90000, key=True), 1.0)
    assert out.sender_report(1.0) is None  # no publisher SR yet
    ntp = P.ntp_time(1_700_000_000.0)
    prod.on_sender_report(P.SenderReport(111, ntp, 90000, 1, 100), 1.0)
    sent = P.parse_rtp(sink.rtp[0])
    sr = out.sender_report(2.0)
    assert sr is not None and sr.ssrc == 555 and sr.packets == 1
    assert (sr.rtp_ts - sent.ts) & 0xFFFFFFFF == 90000  # one second later on the outgoing clock
    assert abs(P.ntp_to_unix(sr.ntp) - 1_700_000_001.0) < 1e-3


def test_receive_stats_report_loss_and_rtx_fills_the_gap():
    counters = Counters()
    prod = producer(counters=counters)
    for seq in (1, 2, 4, 5):
        prod.on_rtp(vp8(seq, seq * 3000, key=(seq == 1)), seq / 30)
    block = prod.stats.report(111, 1.0)
    assert block.packets_lost == 1 and block.fraction_lost > 0
    rtx = P.parse_rtp(P.build_rtp(0, False, 98, 9, 9000, 222, b"", b"\x00\x03\x10\x01frame"))
    prod.on_rtx(rtx, 1.1)
    assert prod.stats.report(111, 1.2).packets_lost == 0


def test_a_consumer_starts_only_once_its_subscriber_can_receive_and_keeps_asking_for_a_keyframe():
    sink, feedback, timers = Sink(), Sink(), Timers()
    prod = producer(feedback=feedback, timers=timers)
    sink.up = False
    Consumer(prod, out_stream(sink), Counters())
    prod.on_rtp(vp8(1, 0, key=True), 0.0)  # transport not up: this keyframe cannot be used
    sink.up = True
    prod.on_rtp(vp8(2, 3000), 2.0)  # a delta frame: dropped, and a keyframe is asked for
    assert sink.rtp == [] and len(feedback.rtcp) == 1
    prod.on_rtp(vp8(3, 6000, key=True), 2.1)
    assert len(sink.rtp) == 1 and P.parse_rtp(sink.rtp[0]).payload == vp8(3, 6000, key=True).payload


def test_a_new_consumer_starts_at_once_from_a_recent_keyframe_in_the_cache():
    sink = Sink()
    prod = producer()
    prod.on_rtp(vp8(10, 0, key=True), 0.0)
    prod.on_rtp(vp8(11, 0, start=False), 0.0)
    prod.on_rtp(vp8(12, 3000), 0.1)
    Consumer(prod, out_stream(sink), Counters())
    prod.on_rtp(vp8(13, 6000), 0.2)  # the consumer replays 10-12 from the cache, then sends 13
    sent = [P.parse_rtp(d) for d in sink.rtp]
    assert len(sent) == 4 and sent[0].payload == vp8(10, 0, key=True).payload
    assert [(p.seq - sent[0].seq) & 0xFFFF for p in sent] == [0, 1, 2, 3]


def test_a_gap_on_the_way_in_is_nacked_to_the_publisher_once():
    feedback = Sink()
    prod = producer(feedback=feedback)
    prod.on_rtp(vp8(100, 0, key=True), 0.0)
    prod.on_rtp(vp8(104, 3000), 0.1)  # 101-103 lost
    prod.on_rtp(vp8(105, 3000), 0.1)
    nacks = [m for d in feedback.rtcp for m in P.parse_rtcp(d) if isinstance(m, P.Nack)]
    assert len(nacks) == 1 and sorted(nacks[0].lost) == [101, 102, 103]


def vp8_sent_at(seq, abs_send_time):
    ext = P.ext_block(P.ext_element(3, abs_send_time)) if abs_send_time is not None else b""
    return P.parse_rtp(P.build_rtp(0, False, 97, seq, seq * 3000, 111, ext, b"\x10\x00frame"))


def test_a_watched_producer_records_arrivals_and_converts_them_when_taken():
    prod = producer()
    prod.on_rtp(vp8_sent_at(1, b"\x00\x00\x05"), 0.5)  # not watched yet: not recorded
    prod.watch_arrivals()
    packets = [vp8_sent_at(2, b"\x01\x02\x03"), vp8_sent_at(3, None), vp8_sent_at(4, b"\x01\x02")]
    for i, packet in enumerate(packets):
        prod.on_rtp(packet, 1.0 + i / 10)
    arrivals = prod.take_arrivals()
    assert arrivals == [Arrival(1.0, 2, len(packets[0].data), 0x010203),
                        Arrival(1.1, 3, len(packets[1].data), None),
                        Arrival(1.2, 4, len(packets[2].data), None)]  # not 3 bytes: not abs-send-time
    assert arrivals[0].abs_send_time == 0x010203
    assert prod.take_arrivals() == []  # taken once
    prod.watch_arrivals()  # idempotent: keeps recording into the same buffer
    prod.on_rtp(vp8_sent_at(5, None), 2.0)
    assert [a.seq for a in prod.take_arrivals()] == [5]


def test_arrivals_are_bounded_between_takes_and_the_overflow_is_counted():
    counters = Counters()
    prod = producer(counters=counters)
    prod.watch_arrivals()
    for seq in range(ARRIVALS_MAX + 5):
        prod.on_rtp(vp8_sent_at(seq, None), seq / 1000)
    arrivals = prod.take_arrivals()
    assert len(arrivals) == ARRIVALS_MAX and arrivals[-1].seq == ARRIVALS_MAX - 1
    assert counters.dropped["arrivals_overflow"] == 5
    prod.on_rtp(vp8_sent_at(ARRIVALS_MAX + 5, None), 10.0)  # room again after the take
    assert len(prod.take_arrivals()) == 1


def test_audio_is_not_watched_for_arrivals():
    prod = producer(kind="audio", ssrc=111)
    prod.watch_arrivals()
    prod.on_rtp(opus(1, 0x7F), 0.0)
    assert prod.take_arrivals() == []


def opus(seq, level_byte):
    ext = P.ext_block(P.ext_element(2, bytes([level_byte]))) if level_byte is not None else b""
    return P.parse_rtp(P.build_rtp(0, False, 96, seq, seq * 960, 111, ext, b"opus"))


def test_audio_level_is_the_mean_loudness_since_the_last_take():
    prod = producer(kind="audio", ssrc=111)
    assert prod.take_audio_level() is None  # no samples yet
    prod.on_rtp(opus(1, 0x80 | 27), 0.00)  # voice-activity bit set, -27 dBov: loudness 100
    prod.on_rtp(opus(2, 127), 0.02)  # silence: loudness 0
    prod.on_rtp(opus(3, None), 0.04)  # no level: not a sample
    assert prod.take_audio_level() == 50.0
    assert prod.take_audio_level() is None  # reset by the take
    prod.on_rtp(opus(4, 7), 0.06)
    assert prod.take_audio_level() == 120.0


def test_anchors_name_where_a_source_joined_the_outgoing_stream():
    sink = Sink()
    prod = producer()
    consumer = Consumer(prod, out_stream(sink), Counters())
    assert consumer.anchor is None
    prod.on_rtp(vp8(700, 5000, key=True), 0.0)
    sent = P.parse_rtp(sink.rtp[0])
    anchor = consumer.anchor
    assert anchor is not None and anchor.first_seq == 700
    assert (700 + anchor.seq_offset) & 0xFFFF == sent.seq
    assert (5000 + anchor.ts_offset) & 0xFFFFFFFF == sent.ts
    past = consumer.anchors[-1]
    assert (past.out_start, past.in_start) == (sent.seq, 700)
