"""A lean RTP sender for the synthetic client: pre-encoded frames in, SRTP datagrams out.

aiortc's own sender (packetizer objects, retransmission history, a coroutine chain per packet)
cost the load tool more CPU per participant than the server spends forwarding to it. This one
takes the clip's frames from the paced clip tracks (sfu/client/media.py), cuts VP8 frames into
RFC 7741 packets and Opus frames into one packet each, writes the header and extensions with
``struct``, and sends through the same synchronous SRTP path as the server (``WireSender``).
It also produces the sender reports the server translates for lip sync. When transport-cc is
negotiated, every packet carries the next number of the transport-wide sequence its senders share
(a ``SendHistory``, which remembers send time and size for the server's transport feedback).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Protocol

from sfu.transport import packets as P
from sfu.transport.transportcc import SendHistory

MAX_PAYLOAD = 1200
AUDIO_LEVEL = bytes((0x80 | 40,))  # voice activity, -40 dBov


class Wire(Protocol):
    def ready(self) -> bool: ...

    def send_rtp(self, data: bytes) -> None: ...


class FrameSource(Protocol):
    kind: str

    async def recv(self) -> Any: ...


class LayeredSource(Protocol):
    """Simulcast layers in lockstep (``sfu.client.media.SimulcastVideoTrack``)."""

    def take_due_positions(self, now: float) -> list[tuple[int, int, bool]]: ...

    async def recv_position(self) -> tuple[int, int, bool]: ...

    def frame(self, layer: int, position: int) -> Any: ...  # .data: bytes

    def request_keyframe(self) -> None: ...


class Pollable(Protocol):
    def poll(self, now: float) -> None: ...


class PacedRtpSender:
    def __init__(self, source: FrameSource, wire: Wire, *, ssrc: int, payload_type: int,
                 clock_rate: int, mid: str, ext_ids: dict[str, int],
                 twcc: SendHistory | None = None, rid: str | None = None) -> None:
        self.source = source
        self.wire = wire
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.kind = source.kind
        self.packets = 0
        self.octets = 0
        self.reports: list[P.ReportBlock] = []  # the server's latest receiver reports on this stream
        self._connected = False
        self._seq = random.randint(0, 0xFFFF)
        self._ts_base = random.randint(0, 0x7FFFFFFF)
        self._last: tuple[float, int] | None = None  # (unix time, RTP timestamp) of the last frame
        fixed = b""
        if "mid" in ext_ids:
            fixed += P.ext_element(ext_ids["mid"], mid.encode())
        self.rid = rid  # a simulcast layer's: in the rtp-stream-id extension of every packet
        if rid is not None and "rid" in ext_ids:
            fixed += P.ext_element(ext_ids["rid"], rid.encode())
        if self.kind == "audio" and "audio_level" in ext_ids:
            fixed += P.ext_element(ext_ids["audio_level"], AUDIO_LEVEL)
        self._fixed_ext = fixed
        self._ast_id = ext_ids.get("abs_send_time") if self.kind == "video" else None
        self.twcc = twcc

    def poll(self, now: float) -> None:
        """Send the frames due at ``now`` (the loop's clock), for a ``SendScheduler``."""
        take_due = getattr(self.source, "take_due", None)
        if take_due is None:
            return
        for data, pts, keyframe in take_due(now):
            if not self._connected:
                if not self.wire.ready():
                    continue
                self._connected = True
                request = getattr(self.source, "request_keyframe", None)
                if request is not None and not keyframe:
                    request()
                    continue
            self.send_frame(data, pts)

    async def run(self) -> None:
        connected = False
        while True:
            frame = await self.source.recv()
            if not connected:
                # like an encoder that starts with the connection: the first frame is a keyframe
                if not self.wire.ready():
                    continue
                connected = True
                request = getattr(self.source, "request_keyframe", None)
                if request is not None and not getattr(frame, "is_keyframe", True):
                    request()
                    continue
            self.send_frame(bytes(frame), int(frame.pts))

    def send_frame(self, data: bytes, pts: int) -> None:
        now = time.time()
        ts = (pts + self._ts_base) & 0xFFFFFFFF
        self._last = (now, ts)
        ext_elements = self._fixed_ext
        if self._ast_id is not None:
            ext_elements += P.ext_element(self._ast_id, P.abs_send_time(now))
        # with transport-cc the block is made per packet (each has its own number)
        ext = P.ext_block(ext_elements) if self.twcc is None else ext_elements
        if self.kind == "video":
            chunks = [data[i:i + MAX_PAYLOAD] for i in range(0, len(data), MAX_PAYLOAD)] or [b""]
            last = len(chunks) - 1
            for i, chunk in enumerate(chunks):
                descriptor = b"\x10" if i == 0 else b"\x00"  # S bit on the frame's first packet
                self._send(i == last, ts, ext, descriptor + chunk)
        else:
            self._send(False, ts, ext, data)

    def _send(self, marker: bool, ts: int, ext: bytes, payload: bytes) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        twcc = self.twcc
        if twcc is not None:
            ext = P.ext_block_twcc(ext, b"", twcc.header, (twcc.count + 1) & 0xFFFF)
        packet = P.build_rtp(0, marker, self.payload_type, self._seq, ts, self.ssrc, ext, payload)
        if twcc is not None:
            twcc.record(len(packet), time.monotonic())
        self.wire.send_rtp(packet)
        self.packets += 1
        self.octets += len(packet)

    def sender_report(self, now_unix: float) -> P.SenderReport | None:
        if self._last is None:
            return None
        at, ts = self._last
        rtp_now = (ts + int((now_unix - at) * self.clock_rate)) & 0xFFFFFFFF
        return P.SenderReport(self.ssrc, P.ntp_time(now_unix), rtp_now, self.packets, self.octets)


class SimulcastSender:
    """Sends the layers of a :class:`LayeredSource` in lockstep, one :class:`PacedRtpSender` per
    layer (lowest first; each its own SSRC and rid). The layers' own ``run``/``poll`` are not
    used: this takes each due frame position once and sends every active layer's frame there, so
    the layers carry the same frames at the same RTP timestamps.

    A layer turned off (:meth:`set_active`) sends nothing and keeps its sequence numbers and
    timestamps; turned on again it waits for a keyframe (one is requested) before sending. The
    first frame sent once the wire is up is a keyframe too."""

    kind = "video"

    def __init__(self, source: LayeredSource, layers: list[PacedRtpSender], wire: Wire) -> None:
        self.source = source
        self.layers = layers
        self.wire = wire
        self.active = [True] * len(layers)
        self._need_keyframe = [True] * len(layers)
        self._connected = False

    def set_active(self, rid: str, active: bool) -> bool:
        """Turn the layer of ``rid`` on or off; whether that changed anything."""
        for i, layer in enumerate(self.layers):
            if layer.rid == rid and self.active[i] != active:
                self.active[i] = active
                if active:
                    self._need_keyframe[i] = True
                    if self._connected:
                        self.source.request_keyframe()
                return True
        return False

    def poll(self, now: float) -> None:
        for position, pts, keyframe in self.source.take_due_positions(now):
            self._send(position, pts, keyframe)

    async def run(self) -> None:
        while True:
            position, pts, keyframe = await self.source.recv_position()
            self._send(position, pts, keyframe)

    def _send(self, position: int, pts: int, keyframe: bool) -> None:
        if not self._connected:
            if not self.wire.ready():
                return
            self._connected = True
            if not keyframe:
                self.source.request_keyframe()
                return
        for i, layer in enumerate(self.layers):
            if not self.active[i]:
                continue
            if self._need_keyframe[i]:
                if not keyframe:
                    continue
                self._need_keyframe[i] = False
            layer.send_frame(self.source.frame(i, position).data, pts)


class SendScheduler:
    """Paces many senders on one timer (every ``interval`` seconds) instead of one sleep per frame
    per track: a load generator with hundreds of tracks wakes 100 times a second, not thousands.
    ``start()`` it, ``add``/``discard`` senders, and ``close()`` it (cancels and awaits its task)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.senders: set[Pollable] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def add(self, sender: Pollable) -> None:
        self.senders.add(sender)

    def discard(self, sender: Pollable) -> None:
        self.senders.discard(sender)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            now = loop.time()
            for sender in list(self.senders):
                sender.poll(now)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
