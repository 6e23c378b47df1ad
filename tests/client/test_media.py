"""The synthetic client's pre-encoded media: clip, cache file, paced looping tracks, aiortc loopback."""

from __future__ import annotations

import asyncio
import threading
from fractions import Fraction
from pathlib import Path

import aioice.ice
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.client import media
from sfu.client.media import (
    AUDIO_FRAME_SAMPLES,
    Clip,
    ClipAudioTrack,
    ClipParams,
    ClipVideoTrack,
    Pacer,
    clip_path,
    default_clip_dir,
    generate_clip,
    load_clip,
    read_clip,
)

FPS = 30
KEYFRAME_EVERY = 75  # 2.5 s at 30 fps
TICKS_PER_FRAME = 90_000 // FPS


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clip")


@pytest.fixture(scope="module")
def clip(clip_dir: Path) -> Clip:
    return generate_clip(clip_dir, seconds=3)  # 90 frames: keyframes at 0 and 75


class SteppingClock:
    """A clock that is exactly on time for every frame: each reading moves it one period on."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.now = 1000.0

    def __call__(self) -> float:
        now = self.now
        self.now += self.period
        return now


# --- the clip ----------------------------------------------------------------------------


def test_clip_has_a_keyframe_every_two_and_a_half_seconds(clip: Clip) -> None:
    assert len(clip.video) == 3 * FPS
    assert clip.keyframe_indices == tuple(range(0, len(clip.video), KEYFRAME_EVERY))
    for frame in clip.video:  # VP8 payload header, bit 0 of the first byte: 0 means key frame
        assert (frame.data[0] & 1 == 0) == frame.keyframe


def test_clip_bitrates_are_roughly_the_targets(clip: Clip) -> None:
    assert 350 < clip.video_kbps < 650
    assert 24 < clip.audio_kbps < 40
    assert clip.video_seconds == pytest.approx(3.0)
    assert clip.audio_seconds == pytest.approx(3.0)
    assert {f.duration for f in clip.video} == {TICKS_PER_FRAME}
    assert {f.duration for f in clip.audio} == {AUDIO_FRAME_SAMPLES}


def test_cache_file_round_trips(clip: Clip, clip_dir: Path) -> None:
    assert read_clip(clip_path(clip_dir, clip.params)) == clip
    assert load_clip(clip_dir, clip.params) == clip  # found in the cache, not encoded again


def test_default_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SFU_CLIP_DIR", str(tmp_path))
    assert default_clip_dir() == tmp_path
    monkeypatch.delenv("SFU_CLIP_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_clip_dir() == tmp_path / "sfu-clip"


def test_concurrent_loads_encode_once_and_leave_no_temp_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    params = ClipParams(width=160, height=120, seconds=0.5)
    encoded: list[ClipParams] = []
    real_encode = media.encode_clip

    def counting_encode(p: ClipParams) -> Clip:
        encoded.append(p)
        return real_encode(p)

    monkeypatch.setattr(media, "encode_clip", counting_encode)
    results: list[Clip] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_clip(tmp_path, params)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(encoded) == 1
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".bin", ".lock"]


def test_a_corrupt_cache_file_is_regenerated(tmp_path: Path) -> None:
    params = ClipParams(width=160, height=120, seconds=0.5)
    path = clip_path(tmp_path, params)
    path.write_bytes(b"SFUCLIP\x01garbage")
    clip = load_clip(tmp_path, params)
    assert clip.video[0].keyframe
    assert read_clip(path) == clip


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        ClipParams(width=641)
    with pytest.raises(ValueError):
        ClipParams(fps=0)


# --- pacing ------------------------------------------------------------------------------


def test_pacer_schedules_from_its_start_without_drift() -> None:
    pacer = Pacer(Fraction(30))
    assert pacer.due(10.0) == 10.0
    assert [pacer.take() for _ in range(3)] == [0, 1, 2]
    assert pacer.due(10.01) == pytest.approx(10.1)  # slot 3, on the schedule, not now + period
    assert pacer.skipped == 0


def test_pacer_bursts_at_most_max_burst_frames_when_late() -> None:
    pacer = Pacer(Fraction(30), max_burst=3)
    pacer.due(0.0)
    pacer.take()
    due = pacer.due(1.0)  # slot 30 is due now; slots 1..26 are skipped, 27..29 may burst
    assert pacer.skipped == 26
    assert due == pytest.approx(27 / 30)
    assert [pacer.take() for _ in range(4)] == [27, 28, 29, 30]
    assert pacer.due(1.0) == pytest.approx(31 / 30)  # back on time
    assert pacer.skipped == 26


async def test_tracks_deliver_about_fps_frames_per_second(clip: Clip) -> None:
    async def count(track: MediaStreamTrack, seconds: float) -> int:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        n = 0
        while loop.time() < end:
            await track.recv()
            n += 1
        return n

    video, audio = ClipVideoTrack(clip), ClipAudioTrack(clip)
    frames, packets = await asyncio.gather(count(video, 1.0), count(audio, 1.0))
    assert 25 <= frames <= 36
    assert 42 <= packets <= 58
    assert video.frames_sent == frames and video.late_skips == 0


# --- timestamps and keyframes ------------------------------------------------------------


async def test_video_timestamps_keep_increasing_across_the_loop(clip: Clip) -> None:
    track = ClipVideoTrack(clip, clock=SteppingClock(1 / FPS))
    packets = [await track.recv() for _ in range(2 * len(clip.video) + 5)]
    pts = [p.pts for p in packets]
    assert pts == [n * TICKS_PER_FRAME for n in range(len(packets))]
    assert all(p.time_base == Fraction(1, 90_000) for p in packets)
    assert track.loops == 2
    first_of_second_loop = packets[len(clip.video)]
    assert first_of_second_loop.is_keyframe and bytes(first_of_second_loop) == clip.video[0].data
    assert track.frames_sent == len(packets)
    assert track.keyframes_sent == sum(p.is_keyframe for p in packets) == 2 * 2 + 1


async def test_audio_timestamps_keep_increasing_across_the_loop(clip: Clip) -> None:
    track = ClipAudioTrack(clip, clock=SteppingClock(0.02))
    packets = [await track.recv() for _ in range(len(clip.audio) + 3)]
    assert [p.pts for p in packets] == [n * AUDIO_FRAME_SAMPLES for n in range(len(packets))]
    assert bytes(packets[len(clip.audio)]) == clip.audio[0].data
    assert track.loops == 1


async def test_request_keyframe_makes_the_next_packet_a_keyframe(clip: Clip) -> None:
    track = ClipVideoTrack(clip, clock=SteppingClock(1 / FPS))
    for _ in range(5):
        await track.recv()
    track.request_keyframe()
    packet = await track.recv()
    assert packet.is_keyframe and bytes(packet) == clip.video[KEYFRAME_EVERY].data
    assert packet.pts == 5 * TICKS_PER_FRAME  # the clip jumped, the timestamps did not
    assert track.frames_skipped_for_keyframe == KEYFRAME_EVERY - 5
    follower = await track.recv()
    assert bytes(follower) == clip.video[KEYFRAME_EVERY + 1].data

    # Past the clip's last keyframe, the request wraps to the first frame.
    for _ in range(5):
        await track.recv()
    track.request_keyframe()
    packet = await track.recv()
    assert packet.is_keyframe and bytes(packet) == clip.video[0].data
    assert packet.pts == 12 * TICKS_PER_FRAME
    assert track.keyframes_sent == 3 and track.keyframe_requests == 2


async def test_a_stopped_track_ends(clip: Clip) -> None:
    track = ClipAudioTrack(clip)
    await track.recv()
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


# --- end to end through aiortc -----------------------------------------------------------


async def test_aiortc_sends_the_packets_without_encoding_and_they_decode(
    clip: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *args, **kwargs: ["127.0.0.1"])
    config = RTCConfiguration(iceServers=[])
    publisher, subscriber = RTCPeerConnection(config), RTCPeerConnection(config)
    video, audio = ClipVideoTrack(clip), ClipAudioTrack(clip)
    received: dict[str, MediaStreamTrack] = {}
    subscriber.on("track", lambda track: received.setdefault(track.kind, track))
    try:
        for track, mime in ((video, "video/VP8"), (audio, "audio/opus")):
            transceiver = publisher.addTransceiver(track, direction="sendonly")
            codecs = RTCRtpSender.getCapabilities(track.kind).codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == mime])
        await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)

        frames = [await asyncio.wait_for(received["video"].recv(), 8) for _ in range(3)]
        assert all(isinstance(f, av.VideoFrame) for f in frames)
        assert [(f.width, f.height) for f in frames if isinstance(f, av.VideoFrame)] == [
            (640, 480)
        ] * 3
        sound = await asyncio.wait_for(received["audio"].recv(), 5)
        assert isinstance(sound, av.AudioFrame) and sound.sample_rate == 48_000

        assert video.frames_sent >= 3 and video.keyframes_sent >= 1 and audio.frames_sent >= 1
        stats = await publisher.getStats()
        sent = {s.kind: s.packetsSent for s in stats.values() if s.type == "outbound-rtp"}
        assert sent["video"] > 0 and sent["audio"] > 0
    finally:
        await publisher.close()
        await subscriber.close()
    assert video.readyState == "ended" and audio.readyState == "ended"
    assert asyncio.all_tasks() == {asyncio.current_task()}
