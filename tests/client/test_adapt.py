"""A synthetic publisher follows REMB and its send-side estimate like an encoder: down at once, up
after a hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sfu.client.adapt import RenditionSelector, publisher_estimator
from sfu.client.media import ClipParams, ClipVideoTrack, Renditions, load_renditions
from sfu.client.sender import PacedRtpSender
from sfu.transport import packets as P
from sfu.transport.transportcc import ReceiveHistory, SendHistory
from tests.bandwidth.linksim import RX_CLOCK
from tests.bandwidth.linksim import Link as SimLink

KBPS = (150, 300, 600, 1200)
FPS = 30
KEYFRAME_EVERY = 15  # 0.5 s
TICKS = 90_000 // FPS


# --- the rule --------------------------------------------------------------------------------


def test_starts_at_the_highest_rendition_within_the_start_rate() -> None:
    assert RenditionSelector(KBPS, 600).current == 2
    assert RenditionSelector(KBPS, 500).current == 1
    assert RenditionSelector(KBPS, 50).current == 0  # nothing fits: the lowest


def test_goes_down_at_once() -> None:
    s = RenditionSelector(KBPS, 600)
    assert s.on_remb(590_000, 10.0) == 1
    assert s.on_remb(100_000, 10.1) == 0
    assert s.on_remb(100_000, 11.0) is None


def test_goes_up_only_after_the_remb_allowed_it_for_the_hold() -> None:
    s = RenditionSelector(KBPS, 300)
    assert s.on_remb(2_500_000, 0.0) is None
    assert s.on_remb(2_500_000, 1.0) is None
    assert s.on_remb(700_000, 2.0) == 2  # the least any REMB of the hold allowed
    assert s.current == 2


def test_a_remb_that_does_not_allow_more_restarts_the_hold() -> None:
    s = RenditionSelector(KBPS, 300)
    assert s.on_remb(1_000_000, 0.0) is None
    assert s.on_remb(300_000, 1.0) is None  # only the current one: the hold starts again
    assert s.on_remb(1_000_000, 2.0) is None
    assert s.on_remb(1_000_000, 3.0) is None
    assert s.on_remb(1_000_000, 4.0) == 2


def test_bad_ladders_are_refused() -> None:
    with pytest.raises(ValueError):
        RenditionSelector((300, 150), 300)
    with pytest.raises(ValueError):
        RenditionSelector((), 300)


# --- the track and the sender ----------------------------------------------------------------


@pytest.fixture(scope="module")
def renditions(tmp_path_factory: pytest.TempPathFactory) -> Renditions:
    params = ClipParams(width=160, height=120, seconds=2, keyframe_interval_s=0.5)
    return load_renditions(tmp_path_factory.mktemp("renditions"), params, KBPS)


class Wire:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def ready(self) -> bool:
        return True

    def send_rtp(self, data: bytes) -> None:
        self.packets.append(data)


def test_renditions_share_frames_and_keyframes_and_grow_in_size(renditions: Renditions) -> None:
    assert renditions.kbps == KBPS
    assert {len(c.video) for c in renditions.clips} == {2 * FPS}
    assert {c.keyframe_indices for c in renditions.clips} == {tuple(range(0, 60, KEYFRAME_EVERY))}
    sizes = [sum(len(f.data) for f in c.video) for c in renditions.clips]
    assert sizes == sorted(sizes)
    assert renditions.encode_seconds > 0


def test_load_renditions_reads_the_cache(renditions: Renditions, tmp_path: Path) -> None:
    params = ClipParams(width=160, height=120, seconds=0.5)
    first = load_renditions(tmp_path, params, (150, 300))
    assert load_renditions(tmp_path, params, (300, 150)) == first
    assert len(list(tmp_path.glob("*.bin"))) == 2


def test_switches_land_on_keyframes_with_continuous_seq_and_timestamps(
    renditions: Renditions,
) -> None:
    track = ClipVideoTrack(renditions, start_kbps=600, hold=2.0)
    wire = Wire()
    sender = PacedRtpSender(track, wire, ssrc=1234, payload_type=96, clock_rate=90_000,
                            mid="1", ext_ids={})
    assert track.rendition_kbps == 600
    sent: list[tuple[bytes, int, bool]] = []
    t = 100.0

    def run(seconds: float) -> None:
        nonlocal t
        for _ in range(round(seconds * FPS)):
            for data, pts, key in track.take_due(t):
                sent.append((data, pts, key))
                sender.send_frame(data, pts)
            t += 1 / FPS

    run(0.2)
    track.on_remb(200_000, t)  # down to 150 at once: the very next frame
    before = len(sent)
    run(0.1)
    assert track.rendition_kbps == 150 and track.switches == 1
    data, _, key = sent[before]
    assert key and data in {f.data for f in renditions.clips[0].video if f.keyframe}

    for _ in range(2):  # REMB allows 1200 for a second: not yet
        track.on_remb(2_000_000, t)
        run(1.0)
    assert track.rendition_kbps == 150
    track.on_remb(2_000_000, t)
    before = len(sent)
    run(0.1)
    assert track.rendition_kbps == 1200 and track.switches == 2
    data, _, key = sent[before]
    assert key and data in {f.data for f in renditions.clips[3].video if f.keyframe}

    assert [pts for _, pts, _ in sent] == [n * TICKS for n in range(len(sent))]
    headers = [P.parse_header(p) for p in wire.packets]
    assert {ssrc for _, _, _, ssrc, _ in headers} == {1234}
    seqs = [seq for _, seq, _, _, _ in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    assert track.late_skips == 0


def test_a_single_clip_ignores_remb(renditions: Renditions) -> None:
    track = ClipVideoTrack(renditions.clips[1])
    track.on_remb(100_000, 0.0)
    assert track.remb_bps == 100_000
    assert track.rendition_kbps == 300 and track.switches == 0


# --- following the send-side estimate on feedback ----------------------------------------------


def closed_loop(capacity_kbps: Callable[[float], float], seconds: float,
                remb_bps: Callable[[float], float | None] = lambda t: None,
                start_kbps: int = 600) -> list[tuple[float, int]]:
    """A publisher sending its rendition (30 fps of <= 1200-byte packets, plus 40 kbit/s of
    audio) through a bottleneck; the receiver's transport feedback every 100 ms (bytes, as the
    server builds them) feeds the publisher's estimator, whose share for video (less audio) and
    the REMB choose the rendition. Returns (time, rendition kbit/s) at each feedback."""
    selector = RenditionSelector(KBPS, start_kbps)
    gcc = publisher_estimator(start_kbps + 40)
    sent, received = SendHistory(), ReceiveHistory(1)
    link = SimLink(capacity_kbps(0.0), delay_s=0.02)
    in_flight: list[tuple[float, int, float]] = []  # (feedback reaches the sender, seq, arrival)
    out: list[tuple[float, int]] = []
    t, next_feedback = 0.0, 0.1
    while t < seconds:
        link.capacity_kbps = capacity_kbps(t)
        frame = KBPS[selector.current] * 1000 / 8 / FPS + 40_000 / 8 / FPS
        for size in [1200] * int(frame // 1200) + [int(frame % 1200) or 100]:
            seq = sent.record(size, t)
            _, arrival = link.send(t, size)
            if arrival is not None:
                in_flight.append((arrival, seq, arrival + RX_CLOCK))
        t += 1 / FPS
        if t >= next_feedback:
            next_feedback += 0.1
            for _, seq, at in [f for f in in_flight if f[0] <= t]:
                received.add(seq & 0xFFFF, at)
            in_flight = [f for f in in_flight if f[0] > t]
            for packet in received.feedback(2):
                [message] = P.parse_rtcp(packet)
                assert isinstance(message, P.TransportFeedback)
                gcc.on_feedback(t + 0.02, sent.match(message))
            estimate = gcc.estimate_kbps(t)
            if estimate is not None:
                selector.on_estimate((estimate - 40) * 1000, t)
            remb = remb_bps(t)
            if remb is not None:
                selector.on_remb(remb, t)
            out.append((t, KBPS[selector.current]))
    return out


def rendition_at(run: list[tuple[float, int]], t: float) -> int:
    return [kbps for when, kbps in run if when <= t][-1]


def test_a_link_that_carries_more_takes_the_publisher_up_the_ladder() -> None:
    run = closed_loop(lambda t: 5000, 25)
    assert rendition_at(run, 2) == 600
    assert rendition_at(run, 25) == 1200
    assert min(kbps for _, kbps in run) == 600  # never down on a link that carries it all


def test_a_link_that_narrows_takes_it_down_at_once_and_back_up_when_it_widens() -> None:
    run = closed_loop(lambda t: 400 if 14 <= t < 20 else 3000, 36)
    assert rendition_at(run, 14) == 1200
    down = [when for when, kbps in run if 14 <= when and kbps <= 300]
    assert down and down[0] < 15.5  # within 1.5 s of the cut
    assert max(kbps for when, kbps in run if 16 <= when < 20) <= 300
    up = [when for when, kbps in run if when >= 20 and kbps >= 600]
    assert up and up[0] < 34, up[:1]  # the estimate grows additively near the old limit


def test_the_remb_caps_what_the_estimate_allows_and_lifting_it_lets_it_back_up() -> None:
    run = closed_loop(lambda t: 5000, 30,
                      remb_bps=lambda t: 320_000 if 5 <= t < 12 else 2_500_000)
    assert rendition_at(run, 4.9) == 600
    assert max(kbps for when, kbps in run if 5 <= when < 12) == 300  # at once, and held there
    assert rendition_at(run, 22) >= 600
