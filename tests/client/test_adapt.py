"""A synthetic publisher follows REMB like an encoder: down at once, up after a hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfu.client.adapt import RenditionSelector
from sfu.client.media import ClipParams, ClipVideoTrack, Renditions, load_renditions
from sfu.client.sender import PacedRtpSender
from sfu.transport import packets as P

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
