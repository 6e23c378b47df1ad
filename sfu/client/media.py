"""Pre-encoded VP8 + Opus media for the synthetic client: encoded once, published without encoding.

A :class:`Clip` is a few seconds of VP8 video (a moving synthetic pattern) and Opus audio (a tone),
encoded once with PyAV and kept in a small cache file outside the repository. :class:`ClipVideoTrack`
and :class:`ClipAudioTrack` loop it forever as ``av.Packet`` objects, which aiortc's ``RTCRtpSender``
packetizes (``Encoder.pack``) instead of encoding, so a load benchmark spends no CPU on encoding.

Unlike ``MediaPlayer(decode=False, loop=True)``, timestamps keep increasing across loops and the
tracks pace themselves on the clock: frame ``n`` is due at ``start + n / frame_rate``.

Cache file layout (big-endian): ``MAGIC``, a ``u32`` header length, a JSON header (parameters,
counts), then one record per packet, video first: ``u8`` flags (bit 0: keyframe), ``u32`` duration
(in the track's RTP clock), ``u32`` length, payload.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.client.adapt import RenditionSelector

FORMAT_VERSION = 1
DEFAULT_RENDITIONS_KBPS = (150, 300, 600, 1200)
MAGIC = b"SFUCLIP\x01"
VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = Fraction(1, AUDIO_CLOCK_RATE)

_RECORD = struct.Struct(">BII")
_U32 = struct.Struct(">I")
_KEYFRAME_FLAG = 0x01


@dataclass(frozen=True)
class ClipParams:
    """What to encode. The cache file name carries a digest of these."""

    width: int = 640
    height: int = 480
    fps: int = 30
    video_kbps: int = 500
    keyframe_interval_s: float = 2.5
    seconds: float = 10.0
    audio_kbps: int = 32
    audio_channels: int = 1
    tone_hz: float = 440.0

    def __post_init__(self) -> None:
        problems = []
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            problems.append(
                f"width and height must be positive and even: {self.width}x{self.height}"
            )
        if self.fps <= 0 or self.video_kbps <= 0 or self.audio_kbps <= 0:
            problems.append("fps, video_kbps and audio_kbps must be positive")
        if self.keyframe_interval_s <= 0 or self.seconds <= 0:
            problems.append("keyframe_interval_s and seconds must be positive")
        if self.audio_channels not in (1, 2):
            problems.append(f"audio_channels must be 1 or 2: {self.audio_channels}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def video_frames(self) -> int:
        return max(1, round(self.seconds * self.fps))

    @property
    def audio_frames(self) -> int:
        return max(1, round(self.seconds * AUDIO_CLOCK_RATE / AUDIO_FRAME_SAMPLES))

    @property
    def keyframe_interval_frames(self) -> int:
        return max(1, round(self.keyframe_interval_s * self.fps))

    def digest(self) -> str:
        # numbers as floats: ClipParams(seconds=5) and ClipParams(seconds=5.0) (a CLI's float)
        # are the same clip, and must share one cache file rather than encode it twice
        fields = {k: float(v) if isinstance(v, int | float) else v
                  for k, v in dataclasses.asdict(self).items()} | {"format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded packet: payload, keyframe flag, duration in its track's RTP clock."""

    data: bytes
    keyframe: bool
    duration: int


@dataclass(frozen=True)
class Clip:
    """An encoded clip: VP8 frames at ``params.fps`` and 20 ms Opus frames."""

    params: ClipParams
    video: tuple[EncodedFrame, ...]
    audio: tuple[EncodedFrame, ...]
    encode_seconds: float = 0.0

    @property
    def keyframe_indices(self) -> tuple[int, ...]:
        return tuple(i for i, frame in enumerate(self.video) if frame.keyframe)

    @property
    def video_seconds(self) -> float:
        return sum(f.duration for f in self.video) / VIDEO_CLOCK_RATE

    @property
    def audio_seconds(self) -> float:
        return sum(f.duration for f in self.audio) / AUDIO_CLOCK_RATE

    @property
    def video_kbps(self) -> float:
        """Measured average video bitrate (payload only)."""
        return sum(len(f.data) for f in self.video) * 8 / self.video_seconds / 1000

    @property
    def audio_kbps(self) -> float:
        return sum(len(f.data) for f in self.audio) * 8 / self.audio_seconds / 1000


# --- encoding (once) ---------------------------------------------------------------------


def _frame_durations(count: int, clock_rate: int, rate: Fraction) -> list[int]:
    """Durations whose running sum is exactly ``n * clock_rate / rate`` rounded down."""
    edges = [math.floor(n * clock_rate / rate) for n in range(count + 1)]
    return [b - a for a, b in zip(edges, edges[1:], strict=False)]


def _video_pattern(params: ClipParams) -> Iterator[np.ndarray[Any, Any]]:
    """yuv420p planes (stacked) of a scrolling textured background with a bouncing inverted box."""
    w, h = params.width, params.height
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0 : 2 * h, 0 : 2 * w]
    texture = (
        128
        + 50 * np.sin(xx / 37.0) * np.cos(yy / 29.0)
        + 30 * np.sin((xx + yy) / 11.0)
        + rng.normal(0, 8, size=xx.shape)
    )
    background = np.clip(texture, 16, 235).astype(np.uint8)
    box = max(2, min(w, h) // 4)
    for n in range(params.video_frames):
        t = n / params.fps
        ox, oy = (4 * n) % w, (2 * n) % h
        luma = background[oy : oy + h, ox : ox + w].copy()
        bx = int((w - box) * (0.5 + 0.5 * math.sin(t * 1.3)))
        by = int((h - box) * (0.5 + 0.5 * math.cos(t * 0.9)))
        luma[by : by + box, bx : bx + box] = 255 - luma[by : by + box, bx : bx + box]
        u = np.full((h // 4, w), int(128 + 50 * math.sin(t)), np.uint8)
        v = np.full((h // 4, w), int(128 + 50 * math.cos(t)), np.uint8)
        yield np.concatenate([luma, u, v])


def _encode_video(params: ClipParams) -> list[EncodedFrame]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = params.width
    codec.height = params.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, params.fps)
    codec.framerate = Fraction(params.fps)
    codec.bit_rate = params.video_kbps * 1000
    codec.gop_size = params.keyframe_interval_frames  # libvpx kf_max_dist
    codec.options = {
        "keyint_min": str(params.keyframe_interval_frames),  # kf_min_dist: exactly this spacing
        "deadline": "realtime",
        "cpu-used": "6",
        "lag-in-frames": "0",  # one packet per frame, in order
        "auto-alt-ref": "0",  # no invisible alt-ref frames
        "max-intra-rate": "1500",  # keyframes at most 15x an average frame
        "maxrate": str(int(params.video_kbps * 1200)),
        "undershoot-pct": "95",
        "overshoot-pct": "15",
    }
    packets: list[av.Packet[Any]] = []
    for n, planes in enumerate(_video_pattern(params)):
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = n
        frame.time_base = codec.time_base
        if n == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    if len(packets) != params.video_frames:
        raise RuntimeError(f"libvpx gave {len(packets)} packets for {params.video_frames} frames")
    durations = _frame_durations(len(packets), VIDEO_CLOCK_RATE, Fraction(params.fps))
    frames = [
        EncodedFrame(bytes(p), bool(p.is_keyframe), d)
        for p, d in zip(packets, durations, strict=True)
    ]
    if not frames[0].keyframe:
        raise RuntimeError("libvpx did not start the clip with a keyframe")
    return frames


def _encode_audio(params: ClipParams) -> list[EncodedFrame]:
    layout = "mono" if params.audio_channels == 1 else "stereo"
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK_RATE
    codec.layout = layout
    codec.format = "s16"
    codec.bit_rate = params.audio_kbps * 1000
    codec.time_base = AUDIO_TIME_BASE
    codec.options = {"application": "audio", "frame_duration": "20", "vbr": "constrained"}
    count = params.audio_frames
    packets: list[av.Packet[Any]] = []
    for n in range(count):
        t = (np.arange(AUDIO_FRAME_SAMPLES) + n * AUDIO_FRAME_SAMPLES) / AUDIO_CLOCK_RATE
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
        tone = (0.3 * 32767 * envelope * np.sin(2 * np.pi * params.tone_hz * t)).astype(np.int16)
        samples = np.tile(tone, params.audio_channels).reshape(1, -1)  # packed s16
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
        frame.sample_rate = AUDIO_CLOCK_RATE
        frame.pts = n * AUDIO_FRAME_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    # The encoder's look-ahead leaves a short packet at the end: keep exactly `count` 20 ms frames.
    packets = [p for p in packets if p.duration == AUDIO_FRAME_SAMPLES][:count]
    if len(packets) != count:
        raise RuntimeError(f"libopus gave {len(packets)} 20 ms packets for {count} frames")
    return [EncodedFrame(bytes(p), True, AUDIO_FRAME_SAMPLES) for p in packets]


# --- cache file --------------------------------------------------------------------------


def clip_path(directory: Path, params: ClipParams) -> Path:
    return directory / f"clip-{params.digest()}.bin"


def default_clip_dir() -> Path:
    """``$SFU_CLIP_DIR``, else ``$XDG_CACHE_HOME/sfu-clip`` (``~/.cache/sfu-clip``)."""
    explicit = os.environ.get("SFU_CLIP_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sfu-clip"


def _serialize(clip: Clip) -> bytes:
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "params": dataclasses.asdict(clip.params),
            "video": len(clip.video),
            "audio": len(clip.audio),
            "encode_seconds": clip.encode_seconds,
        }
    ).encode()
    parts = [MAGIC, _U32.pack(len(header)), header]
    for frame in (*clip.video, *clip.audio):
        flags = _KEYFRAME_FLAG if frame.keyframe else 0
        parts.append(_RECORD.pack(flags, frame.duration, len(frame.data)))
        parts.append(frame.data)
    return b"".join(parts)


def _deserialize(blob: bytes) -> Clip:
    """Parse a cache file or raise ``ValueError``."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _U32.size:
        raise ValueError("not a clip file")
    offset = len(MAGIC)
    (header_len,) = _U32.unpack_from(blob, offset)
    offset += _U32.size
    try:
        header = json.loads(blob[offset : offset + header_len])
        params = ClipParams(**header["params"])
        counts = (int(header["video"]), int(header["audio"]))
        encode_seconds = float(header["encode_seconds"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad clip header: {exc}") from exc
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"clip format {header.get('format')} is not {FORMAT_VERSION}")
    offset += header_len
    frames: list[EncodedFrame] = []
    for _ in range(sum(counts)):
        if offset + _RECORD.size > len(blob):
            raise ValueError("clip file truncated")
        flags, duration, length = _RECORD.unpack_from(blob, offset)
        offset += _RECORD.size
        if offset + length > len(blob):
            raise ValueError("clip file truncated")
        frames.append(EncodedFrame(blob[offset : offset + length], bool(flags & 1), duration))
        offset += length
    if offset != len(blob):
        raise ValueError("trailing bytes in clip file")
    video, audio = tuple(frames[: counts[0]]), tuple(frames[counts[0] :])
    if not video or not audio or not video[0].keyframe:
        raise ValueError("clip file has no media or does not start with a keyframe")
    return Clip(params, video, audio, encode_seconds)


def _write_atomically(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def encode_clip(params: ClipParams) -> Clip:
    """Encode a clip in memory (no file)."""
    started = time.perf_counter()
    video = _encode_video(params)
    audio = _encode_audio(params)
    return Clip(params, tuple(video), tuple(audio), time.perf_counter() - started)


def generate_clip(
    directory: Path,
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    video_kbps: int = 500,
    keyframe_interval_s: float = 2.5,
    seconds: float = 10,
) -> Clip:
    """Encode a clip and store it in ``directory`` (atomically: temp file, then rename)."""
    params = ClipParams(
        width=width,
        height=height,
        fps=fps,
        video_kbps=video_kbps,
        keyframe_interval_s=keyframe_interval_s,
        seconds=seconds,
    )
    return _generate_into(directory, params)


def _generate_into(directory: Path, params: ClipParams) -> Clip:
    directory.mkdir(parents=True, exist_ok=True)
    clip = encode_clip(params)
    _write_atomically(clip_path(directory, params), _serialize(clip))
    return clip


def read_clip(path: Path) -> Clip:
    """Read a cache file; ``ValueError`` if it is not a valid clip."""
    return _deserialize(path.read_bytes())


def load_clip(directory: Path | None = None, params: ClipParams | None = None) -> Clip:
    """The cached clip for ``params`` in ``directory`` (default :func:`default_clip_dir`).

    Generates it if missing or unreadable. A lock file keeps two processes from encoding the
    same clip at once; the write itself is atomic, so readers never see half a file.
    """
    params = params or ClipParams()
    directory = directory or default_clip_dir()
    path = clip_path(directory, params)
    with contextlib.suppress(FileNotFoundError, ValueError):
        return read_clip(path)
    directory.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return read_clip(path)  # another process made it while we waited
            return _generate_into(directory, params)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Renditions:
    """The same clip encoded at several video bitrates (ascending): same frame count, frame rate
    and keyframe positions, so a sender can switch from one to another at any keyframe."""

    clips: tuple[Clip, ...]

    def __post_init__(self) -> None:
        if not self.clips:
            raise ValueError("no renditions")
        first = self.clips[0]
        for clip in self.clips[1:]:
            if (len(clip.video), clip.params.fps, clip.keyframe_indices) != (
                len(first.video), first.params.fps, first.keyframe_indices
            ):
                raise ValueError("renditions differ in frames, frame rate or keyframes")
        if list(self.kbps) != sorted(set(self.kbps)):
            raise ValueError(f"rendition bitrates must be ascending and distinct: {self.kbps}")

    @property
    def kbps(self) -> tuple[int, ...]:
        """The target video bitrate of each rendition."""
        return tuple(c.params.video_kbps for c in self.clips)

    @property
    def encode_seconds(self) -> float:
        return sum(c.encode_seconds for c in self.clips)

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """The width and height of each rendition."""
        return tuple((c.params.width, c.params.height) for c in self.clips)


@dataclass(frozen=True)
class LayerSize:
    """One simulcast layer's picture size and target video bitrate."""

    width: int
    height: int
    kbps: int


# Lowest first, as the server's rids q, h, f: a quarter, half and the full 1280x720 picture.
SIMULCAST_LAYERS = (LayerSize(320, 180, 150), LayerSize(640, 360, 500), LayerSize(1280, 720, 1500))


def load_renditions(
    directory: Path | None = None,
    params: ClipParams | None = None,
    kbps: Sequence[int] = DEFAULT_RENDITIONS_KBPS,
) -> Renditions:
    """The clip of ``params`` at each of ``kbps`` (its ``video_kbps`` is replaced), from the cache
    (:func:`load_clip`; missing ones are encoded, in parallel threads: libvpx releases the GIL)."""
    params = params or ClipParams()
    wanted = sorted(set(kbps))
    with ThreadPoolExecutor(max(1, min(len(wanted), os.cpu_count() or 1))) as pool:
        clips = list(pool.map(
            lambda k: load_clip(directory, dataclasses.replace(params, video_kbps=k)), wanted))
    return Renditions(tuple(clips))


def load_layers(
    directory: Path | None = None,
    params: ClipParams | None = None,
    sizes: Sequence[LayerSize] = SIMULCAST_LAYERS,
) -> Renditions:
    """The clip of ``params`` at each of ``sizes`` (width, height and ``video_kbps`` replaced;
    ascending), for a simulcast publisher: the same frame count, frame rate and keyframe positions
    in every layer, so a receiver can be switched from one to another on a keyframe. Each size is
    a clip of its own in the cache (its digest covers the size); missing ones are encoded in
    parallel threads. A 10 s 1280x720 clip takes about 4 s to encode on one core."""
    params = params or ClipParams()
    layers = [dataclasses.replace(params, width=s.width, height=s.height, video_kbps=s.kbps)
              for s in sizes]
    with ThreadPoolExecutor(max(1, min(len(layers), os.cpu_count() or 1))) as pool:
        clips = list(pool.map(lambda p: load_clip(directory, p), layers))
    if [c.params.width * c.params.height for c in clips] != sorted(
            {c.params.width * c.params.height for c in clips}):
        raise ValueError(f"layer sizes must be ascending and distinct: {list(sizes)}")
    return Renditions(tuple(clips))


# --- pacing and tracks -------------------------------------------------------------------


class Pacer:
    """Frame slots on a fixed schedule: slot ``n`` is due at ``start + n / rate``.

    Pure (the caller passes ``now``). The schedule starts at the first :meth:`due`. When more
    than ``max_burst`` slots are overdue, the excess slots are skipped (counted in ``skipped``),
    so a stalled caller catches up with a burst of at most ``max_burst`` frames.
    """

    def __init__(self, rate: Fraction, *, max_burst: int = 3) -> None:
        if rate <= 0 or max_burst < 0:
            raise ValueError("rate must be positive and max_burst not negative")
        self.rate = rate
        self.max_burst = max_burst
        self.start: float | None = None
        self.slot = 0
        self.skipped = 0

    def due(self, now: float) -> float:
        """When the next slot is due (may be in the past by up to ``max_burst`` slots)."""
        if self.start is None:
            self.start = now
        overdue = math.floor((now - self.start) * self.rate) - self.slot
        if overdue > self.max_burst:
            self.slot += overdue - self.max_burst
            self.skipped += overdue - self.max_burst
        return self.start + float(self.slot / self.rate)

    def take(self) -> int:
        """Use up the next slot and return its number."""
        slot = self.slot
        self.slot += 1
        return slot


class _ClipTrack(MediaStreamTrack):
    """Loops encoded frames as ``av.Packet``, paced on a clock (by default the event loop's)."""

    def __init__(
        self,
        frames: tuple[EncodedFrame, ...],
        rate: Fraction,
        clock_rate: int,
        *,
        max_burst: int = 3,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if not frames:
            raise ValueError("a clip track needs at least one frame")
        self._frames = frames
        self._clock_rate = clock_rate
        self._time_base = Fraction(1, clock_rate)
        self._pacer = Pacer(rate, max_burst=max_burst)
        self._clock = clock
        self._position = 0  # index into the clip of the next frame
        self.frames_sent = 0
        self.keyframes_sent = 0
        self.bytes_sent = 0
        self.loops = 0

    @property
    def late_skips(self) -> int:
        """Frame slots skipped because ``recv`` was called too late (timestamps jump)."""
        return self._pacer.skipped

    def _timestamp(self, slot: int) -> int:
        return math.floor(slot * self._clock_rate / self._pacer.rate)

    def _choose_position(self) -> int:
        return self._position

    def take_due(self, now: float) -> list[tuple[bytes, int, bool]]:
        """The frames due at ``now`` as (data, timestamp, keyframe), without waiting: for a
        sender that paces many tracks on one timer instead of one sleep per frame."""
        due: list[tuple[bytes, int, bool]] = []
        while self._pacer.due(now) <= now:
            slot = self._pacer.take()
            frame = self._advance()
            due.append((frame.data, self._timestamp(slot), frame.keyframe))
        return due

    def _next_position(self) -> int:
        """The clip position of the next frame (looping), the clip moved past it."""
        position = self._choose_position()
        self._position = position + 1
        if self._position == len(self._frames):
            self._position = 0
            self.loops += 1
        return position

    def _advance(self) -> EncodedFrame:
        """The next frame of the clip (looping), counted as sent."""
        position = self._next_position()  # first: a rendition switch changes self._frames
        frame = self._frames[position]
        self.frames_sent += 1
        self.keyframes_sent += frame.keyframe
        self.bytes_sent += len(frame.data)
        return frame

    async def _next_slot(self) -> int:
        """Wait until the next frame slot is due and take it."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        delay = self._pacer.due(now) - now
        if delay > 0:
            await asyncio.sleep(delay)
            if self.readyState != "live":
                raise MediaStreamError
        return self._pacer.take()

    async def recv(self) -> av.Packet[Any]:
        slot = await self._next_slot()
        frame = self._advance()
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = self._timestamp(slot)
        packet.time_base = self._time_base
        packet.duration = self._timestamp(slot + 1) - packet.pts
        packet.is_keyframe = frame.keyframe
        return packet


class ClipVideoTrack(_ClipTrack):
    """The clip's VP8 frames at ``fps``, looped, with 90 kHz timestamps that never go back.

    Given :class:`Renditions`, it starts with the highest rendition at most ``start_kbps`` and
    follows the REMBs passed to :meth:`on_remb` and the send-side estimates passed to
    :meth:`on_estimate` like an encoder adapting (rules in
    ``sfu/client/adapt.py``): a switch lands on the next frame, which is the next keyframe of the
    new rendition (the clip jumps ahead as for a keyframe request; timestamps go on as usual).
    """

    kind = "video"

    def __init__(
        self,
        clip: Clip | Renditions,
        *,
        start_kbps: int = 600,
        hold: float = 2.0,
        max_burst: int = 3,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._renditions = clip if isinstance(clip, Renditions) else Renditions((clip,))
        self._selector = RenditionSelector(self._renditions.kbps, start_kbps, hold=hold)
        self._rendition = self._selector.current if isinstance(clip, Renditions) else 0
        first = self._renditions.clips[self._rendition]
        rate = Fraction(first.params.fps)
        super().__init__(first.video, rate, VIDEO_CLOCK_RATE, max_burst=max_burst, clock=clock)
        self._keyframes = first.keyframe_indices
        self._keyframe_requested = False
        self._pending: int | None = None
        self.keyframe_requests = 0
        self.frames_skipped_for_keyframe = 0
        self.switches = 0  # rendition switches that have landed
        self.remb_bps: int | None = None  # the last REMB passed to on_remb
        self.estimate_bps: float | None = None  # the last estimate passed to on_estimate

    @property
    def rendition_kbps(self) -> int:
        """Target bitrate of the rendition being sent."""
        return self._renditions.kbps[self._rendition]

    def on_remb(self, bps: int, now: float) -> None:
        """Follow a REMB the server sent for this stream (``now``: any monotonic clock)."""
        self.remb_bps = bps
        if len(self._renditions.clips) < 2:
            return
        self._switch(self._selector.on_remb(bps, now))

    def on_estimate(self, bps: float, now: float) -> None:
        """Follow the publisher's send-side estimate (the share video may use), as an encoder
        follows its transport's: the rendition fits the lower of it and the REMB."""
        self.estimate_bps = bps
        if len(self._renditions.clips) < 2:
            return
        self._switch(self._selector.on_estimate(bps, now))

    def _switch(self, target: int | None) -> None:
        if target is not None:
            self._pending = None if target == self._rendition else target

    def request_keyframe(self) -> None:
        """Make the next packet a keyframe (the clip jumps ahead; timestamps go on as usual)."""
        self._keyframe_requested = True
        self.keyframe_requests += 1

    def _choose_position(self) -> int:
        position = self._position
        if self._pending is not None:
            self._rendition, self._pending = self._pending, None
            self._frames = self._renditions.clips[self._rendition].video
            self.switches += 1
            self._keyframe_requested = False  # the switch starts with a keyframe anyway
            return self._jump_to_keyframe(position)
        if self._keyframe_requested:
            self._keyframe_requested = False
            return self._jump_to_keyframe(position)
        return position

    def _jump_to_keyframe(self, position: int) -> int:
        i = bisect.bisect_left(self._keyframes, position)
        target = self._keyframes[i] if i < len(self._keyframes) else 0
        self.frames_skipped_for_keyframe += (target - position) % len(self._frames)
        if target < position:
            self.loops += 1
        return target


class ClipAudioTrack(_ClipTrack):
    """The clip's 20 ms Opus frames, looped, with 48 kHz timestamps that never go back."""

    kind = "audio"

    def __init__(
        self, clip: Clip, *, max_burst: int = 3, clock: Callable[[], float] | None = None
    ) -> None:
        rate = Fraction(AUDIO_CLOCK_RATE, AUDIO_FRAME_SAMPLES)
        super().__init__(clip.audio, rate, AUDIO_CLOCK_RATE, max_burst=max_burst, clock=clock)


class SimulcastVideoTrack(ClipVideoTrack):
    """Several layers of one picture (:func:`load_layers`), in lockstep: one pacer and one clip
    position for all, so frame ``n`` of every layer goes out at the same time with the same RTP
    timestamp, and a keyframe in one is a keyframe in all. A keyframe request makes every layer
    jump to the next keyframe together. It never switches layers (every layer is sent; the server
    picks); REMB and estimates are only recorded.

    A sender takes positions (:meth:`take_due_positions` or :meth:`recv_position`) and each
    layer's frame there (:meth:`frame`). ``recv`` gives the lowest layer's frames (as aiortc
    would send if asked)."""

    def __init__(
        self,
        layers: Renditions,
        *,
        max_burst: int = 3,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(layers, start_kbps=layers.kbps[0], max_burst=max_burst, clock=clock)
        self.layers = layers

    def _switch(self, target: int | None) -> None:
        pass  # every layer is sent; the receivers' layer is the server's choice

    def frame(self, layer: int, position: int) -> EncodedFrame:
        return self.layers.clips[layer].video[position]

    def _count(self, position: int) -> None:
        self.frames_sent += 1
        self.keyframes_sent += self._frames[position].keyframe

    def take_due_positions(self, now: float) -> list[tuple[int, int, bool]]:
        """The frames due at ``now`` as (clip position, timestamp, keyframe), without waiting."""
        due: list[tuple[int, int, bool]] = []
        while self._pacer.due(now) <= now:
            slot = self._pacer.take()
            position = self._next_position()
            self._count(position)
            due.append((position, self._timestamp(slot), self._frames[position].keyframe))
        return due

    async def recv_position(self) -> tuple[int, int, bool]:
        """Wait for the next frame: (clip position, timestamp, keyframe)."""
        slot = await self._next_slot()
        position = self._next_position()
        self._count(position)
        return position, self._timestamp(slot), self._frames[position].keyframe
