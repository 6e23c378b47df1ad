"""Simulcast, packet by packet: layers grouped in a track, one forwarded per receiver, switched on
the target layer's keyframe into one continuous stream (sequence numbers, timestamps, VP8
picture ids and TL0PICIDX), NACKs answered from the right layer, and the SDP both ways."""

from __future__ import annotations

from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.forwarder import OutStream, Producer
from sfu.transport.peer import answered_rids, offer_simulcast_rids
from sfu.transport.simulcast import SimulcastConsumer, SimulcastTrack
from tests.transport.test_forwarder import Sink, Timers

FRAME = 3000  # 30 frames/s at 90 kHz


def layer(index: int, feedback: Sink, counters: Counters) -> Producer:
    p = Producer(producer_id=f"alice:video:{'qhf'[index]}", owner="alice", kind="video",
                 clock_rate=90000, ssrc=1000 + index, payload_type=97, feedback=feedback,
                 rtcp_ssrc=9, counters=counters, defer=Timers().defer,
                 ext_ids={"mid": 1, "abs_send_time": 3})
    p.rid = "qhf"[index]
    return p


def track(layers: int = 3) -> tuple[SimulcastTrack, Sink, Counters]:
    feedback, counters = Sink(), Counters()
    t = SimulcastTrack(track_id="alice:video", owner="alice",
                       layers=[layer(i, feedback, counters) for i in range(layers)],
                       feedback=feedback, rtcp_ssrc=9)
    return t, feedback, counters


def vp8(index: int, seq: int, frame: int, *, key: bool = False, start: bool = True,
        pid: int | None = None, tl0: int | None = None, width: int = 320) -> P.RtpPacket:
    """A VP8 packet of layer ``index``: picture id (15 bits) and TL0PICIDX as given; a keyframe
    carries the frame header's start code and size (``width`` x ``width * 3 / 4``)."""
    x = (0x80 if pid is not None else 0) | (0x40 if tl0 is not None else 0)
    desc = bytes([0x80 | (0x10 if start else 0), x])
    if pid is not None:
        desc += bytes([0x80 | (pid >> 8) & 0x7F, pid & 0xFF])
    if tl0 is not None:
        desc += bytes([tl0])
    height = width * 3 // 4
    header = (bytes([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A, width & 0xFF, width >> 8, height & 0xFF,
                     height >> 8]) if key else b"\x01\x00\x00")
    ts = 10_000 * (index + 1) + frame * FRAME  # each layer its own timestamp base
    return P.parse_rtp(P.build_rtp(0, True, 97, seq, ts, 1000 + index, b"", desc + header + b"x"))


def sent(sink: Sink) -> list[tuple[int, int, int, int | None, int | None]]:
    """(seq, ts, ssrc, picture id, tl0picidx) of each packet sent."""
    out = []
    for data in sink.rtp:
        p = P.parse_rtp(data)
        pos, length, tl0 = P.vp8_picture_fields(p.data, p.payload_offset)
        pid = ((p.data[pos] & 0x7F) << 8 | p.data[pos + 1]) if length == 2 else None
        out.append((p.seq, p.ts, p.ssrc, pid, p.data[tl0] if tl0 >= 0 else None))
    return out


def send_frames(t: SimulcastTrack, frames: range, keys: dict[int, set[int]] | None = None,
                layers: tuple[int, ...] = (0, 1, 2)) -> None:
    """Every layer sends one packet per frame (seq = base + frame, its own picture ids)."""
    keys = keys or {}
    for frame in frames:
        for index in layers:
            t.layers[index].on_rtp(
                vp8(index, 100 * (index + 1) + frame, frame, key=frame in keys.get(index, set()),
                    pid=1000 * (index + 1) + frame, tl0=(50 * index + frame) & 0xFF,
                    width=320 << index), frame / 30)


def test_a_receiver_gets_one_layer_and_switches_on_the_target_layers_keyframe() -> None:
    t, feedback, counters = track()
    sink = Sink()
    out = OutStream(ssrc=555, mid="3", kind="video", sink=sink, clock_rate=90000, pt_map={97: 100})
    consumer = SimulcastConsumer(t, out, counters, target=0)
    send_frames(t, range(0, 5), keys={0: {0}, 1: {0}, 2: {0}})
    assert consumer.layer == 0 and len(sink.rtp) == 5  # one layer's packets, not three
    assert {s[2] for s in sent(sink)} == {555}
    plis_before = len(feedback.rtcp)
    consumer.set_layer(2, 5 / 30)
    assert len(feedback.rtcp) == plis_before + 1  # a keyframe asked of the target layer
    assert P.parse_rtcp(feedback.rtcp[-1])[0].media_ssrc == 1002
    send_frames(t, range(5, 8))  # no keyframe on layer 2 yet: layer 0 goes on
    assert consumer.layer == 0 and len(sink.rtp) == 8
    send_frames(t, range(8, 12), keys={2: {8}})  # frame 8 of layer 0 goes before the switch
    assert consumer.layer == 2 and consumer.switches == 1 and counters.layer_switches == 1
    rows = sent(sink)
    assert [r[2] for r in rows] == [555] * 13
    seqs = [r[0] for r in rows]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(13))  # no gap, no repeat
    tss = [r[1] for r in rows]
    assert all(0 < (b - a) & 0xFFFFFFFF < 0x80000000 for a, b in zip(tss, tss[1:], strict=False))
    pids = [r[3] for r in rows]
    assert pids == [(pids[0] + i) & 0x7FFF for i in range(13)]  # one picture id sequence
    tl0s = [r[4] for r in rows]
    assert tl0s == [(tl0s[0] + i) & 0xFF for i in range(13)]
    assert t.layer_sizes()[2] == (1280, 960)  # read from the keyframe's header


def test_switching_down_then_up_keeps_one_stream_and_the_payload_is_otherwise_untouched() -> None:
    t, _, counters = track()
    sink = Sink()
    out = OutStream(ssrc=555, mid="3", kind="video", sink=sink, clock_rate=90000, pt_map={97: 100})
    consumer = SimulcastConsumer(t, out, counters, target=2)
    send_frames(t, range(0, 4), keys={2: {0}})
    consumer.set_layer(0, 4 / 30)
    send_frames(t, range(4, 8), keys={0: {6}})
    consumer.set_layer(1, 8 / 30)
    send_frames(t, range(8, 12), keys={1: {10}})
    assert consumer.switches == 2 and consumer.layer == 1
    rows = sent(sink)
    # f 0-3; moved down, f stops at once and q starts at its keyframe (6); q 6-10, h 10-11
    assert len(rows) == 4 + 5 + 2
    assert [(r[0] - rows[0][0]) & 0xFFFF for r in rows] == list(range(11))
    assert [r[3] for r in rows] == [(rows[0][3] + i) & 0x7FFF for i in range(11)]
    # the bytes after the descriptor are the layer's own: nothing decoded or re-encoded
    last = P.parse_rtp(sink.rtp[-1])
    original = vp8(1, 100 * 2 + 11, 11, pid=2011, tl0=61, width=640)
    assert last.payload[5:] == original.payload[5:]


def test_a_nack_after_a_switch_is_answered_from_the_new_layer_not_the_old_one() -> None:
    """Packets sent since the switch are resent from the new layer's cache, with the picture ids
    they were sent with; packets from before it are not (the receiver decodes from the new
    layer's keyframe on: the old layer's packets would only crowd the link that made it
    switch)."""
    t, _, counters = track()
    sink = Sink()
    out = OutStream(ssrc=555, mid="3", kind="video", sink=sink, clock_rate=90000, pt_map={97: 100})
    consumer = SimulcastConsumer(t, out, counters, target=0)
    send_frames(t, range(0, 4), keys={0: {0}})
    consumer.set_layer(1, 4 / 30)
    send_frames(t, range(4, 8), keys={1: {5}})
    before = sent(sink)  # q 0-5, then h from its keyframe (5)
    for index in (6, 7):
        wanted = before[index]
        assert consumer.retransmit(wanted[0], 1.0)
        assert sent(sink)[-1] == wanted
        assert P.parse_rtp(sink.rtp[-1]).payload == P.parse_rtp(sink.rtp[index]).payload
    count = len(sink.rtp)
    assert not consumer.retransmit(before[2][0], 1.0)  # q's, before h's keyframe
    assert len(sink.rtp) == count and counters.dropped["nack_before_keyframe"] == 1


def test_a_new_receiver_starts_on_the_best_layer_the_publisher_sends() -> None:
    """A 640x480 camera: Chromium sends q and h of the three offered, never f."""
    t, _, counters = track()
    sink = Sink()
    out = OutStream(ssrc=555, mid="3", kind="video", sink=sink, clock_rate=90000, pt_map={97: 100})
    send_frames(t, range(0, 3), keys={0: {0}, 1: {0}}, layers=(0, 1))  # before the receiver
    consumer = SimulcastConsumer(t, out, counters)  # target: the top layer
    assert consumer.target == 2
    send_frames(t, range(30, 33), keys={0: {30}, 1: {32}}, layers=(0, 1))
    assert consumer.layer == 1 and len(sink.rtp) == 1


def test_paused_sends_nothing_and_resumes_on_a_keyframe_without_a_gap() -> None:
    t, feedback, counters = track()
    sink = Sink()
    out = OutStream(ssrc=555, mid="3", kind="video", sink=sink, clock_rate=90000, pt_map={97: 100})
    consumer = SimulcastConsumer(t, out, counters, target=1)
    send_frames(t, range(0, 3), keys={1: {0}})
    consumer.set_paused(True, 0.1)
    send_frames(t, range(3, 6), keys={1: {4}})
    assert len(sink.rtp) == 3 and consumer.layer is None
    consumer.set_paused(False, 0.2)
    send_frames(t, range(6, 9))
    rows = sent(sink)
    # resumed at once from the keyframe of frame 4 in the cache (a sixth of a second old)
    assert len(rows) == 3 + 5 and P.parse_rtp(sink.rtp[3]).payload[5] & 0x01 == 0  # a keyframe
    assert [(r[0] - rows[0][0]) & 0xFFFF for r in rows] == list(range(8))
    assert [r[3] for r in rows] == list(range(2000, 2008))  # picture ids go on from the pause


def test_closing_the_consumer_or_the_track_leaves_no_tap_on_any_layer() -> None:
    t, _, counters = track()
    out = OutStream(ssrc=555, mid="3", kind="video", sink=Sink(), clock_rate=90000, pt_map={})
    consumer = SimulcastConsumer(t, out, counters)
    assert all(len(layer.consumers) == 1 for layer in t.layers)
    consumer.close()
    assert all(not layer.consumers for layer in t.layers) and not t.consumers
    SimulcastConsumer(t, out, counters)
    t.close()
    assert all(layer.closed and not layer.consumers for layer in t.layers) and not t.consumers


def test_remb_names_every_layer_and_arrivals_merge_into_one_sequence() -> None:
    t, feedback, _ = track()
    send_frames(t, range(0, 2), keys={0: {0}, 1: {0}, 2: {0}})
    t.send_remb(900)
    remb = P.parse_rtcp(feedback.rtcp[-1])[0]
    assert remb.bitrate == 900_000 and sorted(remb.ssrcs) == [1000, 1001, 1002]
    t.watch_arrivals()
    send_frames(t, range(2, 6))
    t.layers[1].on_rtp(vp8(1, 100 * 2 + 8, 8, pid=2008), 8 / 30)  # frames 6, 7 lost on h
    arrivals = t.take_arrivals()
    seqs = [a.seq for a in arrivals]
    assert len(arrivals) == 13
    # one sequence: 12 packets in step 1, then a step of 3 for the two lost on layer h
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:], strict=False)] == [1] * 11 + [3]


def test_the_offer_names_three_layers_and_the_answer_is_read() -> None:
    offer = ("v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
             "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=recvonly\r\n"
             "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\na=sendonly\r\n")
    munged = offer_simulcast_rids(offer)
    video = munged.split("m=video")[1]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in video
    assert munged.split("m=video")[2].count("a=rid") == 0  # only the publishing m-line
    answer = ("v=0\r\nm=audio 9 X 96\r\nm=video 9 X 97\r\na=rid:q send\r\na=rid:h send\r\n"
              "a=rid:f send\r\na=simulcast:send q;h;~f\r\nm=video 9 X 97\r\n")
    assert answered_rids(answer) == ["q", "h", "f"]
    assert answered_rids(answer.replace("q;h;~f", "f;q")) == ["q", "f"]  # lowest first
    assert answered_rids(answer.replace("a=simulcast:send q;h;~f\r\n", "")) == []
    assert answered_rids(answer.replace("q;h;~f", "h")) == []  # one layer: not simulcast
    assert answered_rids(answer.replace("q;h;~f", "x;y")) == []  # not what was offered
