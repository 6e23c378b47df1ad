"""Simulcast: one published video in several encodings (layers), each receiver sent one of them.

A browser that answers the server's ``a=simulcast:recv q;h;f`` sends each layer on its own SSRC,
named by its RID (lowest first). Each layer is an ordinary :class:`Producer` (its own statistics,
packet cache, NACKs, keyframe requests, sender reports); a :class:`SimulcastTrack` groups them
and is what the control plane sees as the participant's video. A :class:`SimulcastConsumer`
hears every layer and forwards one: the *current* layer, until a keyframe of the *target* layer
arrives (asked for with PLI), where it switches. As mediasoup's SimulcastConsumer and LiveKit's
forwarder do, the receiver sees one continuous stream: sequence numbers and timestamps are
re-anchored at the switch (``Consumer._start_anchor``) and the VP8 picture id and TL0PICIDX are
rewritten to continue from the last ones sent. Nothing is decoded: a few descriptor bytes change.
"""

from __future__ import annotations

from collections.abc import Sequence

from sfu.transport.counters import Counters
from sfu.transport.forwarder import Arrival, Consumer, OutStream, PacketSink, Producer
from sfu.transport.packets import RtpPacket, build_remb

# rids the server offers, lowest layer first: quarter, half and full resolution
RIDS = ("q", "h", "f")
KEYFRAME_ASK_INTERVAL = 1.0  # a consumer waiting for a layer's keyframe asks again this often


class SimulcastTrack:
    """One participant's simulcast video: its layers, lowest first (a MediaProducer)."""

    kind = "video"

    def __init__(self, *, track_id: str, owner: str, layers: Sequence[Producer],
                 feedback: PacketSink, rtcp_ssrc: int) -> None:
        if not layers:
            raise ValueError("a simulcast track needs at least one layer")
        self.id = track_id
        self.owner = owner
        self.layers = list(layers)
        self.consumers: list[SimulcastConsumer] = []
        self.payload_type = layers[0].payload_type
        self.mid = layers[0].mid
        self.closed = False
        self._feedback = feedback
        self._rtcp_ssrc = rtcp_ssrc
        # arrivals of every layer merged into one sequence for the uplink estimator: per layer,
        # the last sequence number taken, and the merged sequence's last number
        self._last_seq: dict[int, int] = {}
        self._merged_seq = 0

    @property
    def rids(self) -> list[str]:
        return [layer.rid for layer in self.layers]

    @property
    def ssrc(self) -> int | None:
        """The first layer's SSRC once known (what transport feedback names as the media)."""
        return next((layer.ssrc for layer in self.layers if layer.ssrc is not None), None)

    @property
    def octets(self) -> int:
        return sum(layer.octets for layer in self.layers)

    @property
    def packets(self) -> int:
        return sum(layer.packets for layer in self.layers)

    def layer_octets(self) -> list[int]:
        """Bytes received so far on each layer, lowest first."""
        return [layer.octets for layer in self.layers]

    def layer_sizes(self) -> list[tuple[int, int] | None]:
        """(width, height) of each layer's last keyframe, or None before one arrived."""
        return [None if layer.width is None or layer.height is None
                else (layer.width, layer.height) for layer in self.layers]

    def layer_by_rid(self, rid: str) -> Producer | None:
        return next((layer for layer in self.layers if layer.rid == rid), None)

    # -- what the control plane uses (sfu/calls/media.py MediaProducer) ---------------------
    def send_remb(self, kbps: float) -> None:
        """Cap what the publisher sends on all its layers together (a browser drops its top
        layers first to keep under it)."""
        ssrcs = [layer.ssrc for layer in self.layers if layer.ssrc is not None]
        if ssrcs and not self.closed:
            self._feedback.send_rtcp(build_remb(self._rtcp_ssrc, int(kbps * 1000), ssrcs))

    def request_keyframe(self, now: float) -> None:
        for layer in self.layers:
            layer.request_keyframe(now)

    def watch_arrivals(self) -> None:
        for layer in self.layers:
            layer.watch_arrivals()

    def take_arrivals(self) -> list[Arrival]:
        """Every layer's arrivals since the last take, in arrival order, numbered as one
        sequence: each packet advances it by the step its own layer's sequence took (so a
        gap in a layer is a gap in the merged sequence, and loss is seen across layers)."""
        merged: list[tuple[float, int, int, int | None]] = []
        for index, layer in enumerate(self.layers):
            last = self._last_seq.get(index)
            for arrival in layer.take_arrivals():
                step = 1 if last is None else (arrival.seq - last) & 0xFFFF
                if step == 0 or step >= 0x8000:
                    step = 1  # a late or repeated packet: counted as arrived, not as a gap
                last = arrival.seq
                merged.append((arrival.at, step, arrival.size, arrival.abs_send_time))
            if last is not None:
                self._last_seq[index] = last
        merged.sort(key=lambda a: a[0])
        out = []
        seq = self._merged_seq
        for at, step, size, ast in merged:
            seq = (seq + step) & 0xFFFF
            out.append(Arrival(at, seq, size, ast))
        self._merged_seq = seq
        return out

    def take_audio_level(self) -> float | None:
        return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        for layer in self.layers:
            layer.close()


class _LayerTap:
    """What a simulcast consumer registers with each layer: forwards its packets, tagged."""

    __slots__ = ("consumer", "layer")

    def __init__(self, consumer: SimulcastConsumer, layer: int) -> None:
        self.consumer = consumer
        self.layer = layer

    def forward(self, packet: RtpPacket, now: float) -> None:
        self.consumer.forward_layer(packet, now, self.layer)

    def close(self) -> None:
        self.consumer.close()


class SimulcastConsumer(Consumer):
    """A simulcast track forwarded to one subscriber: one layer at a time (see module doc).

    ``target`` is the layer the control plane chose; ``current`` the one being forwarded (None
    before the first keyframe, and after a pause)."""

    __slots__ = ("track", "_target", "current", "switches", "_switching", "_taps", "_anchor_layers",
                 "_pid_off", "_tl0_off")

    def __init__(self, track: SimulcastTrack, out: OutStream, counters: Counters,
                 target: int | None = None) -> None:
        # the base registers with ``producer.consumers``: here the track's list
        super().__init__(track, out, counters)  # type: ignore[arg-type]
        self.track = track
        self._target = len(track.layers) - 1 if target is None else target
        self.current: int | None = None
        self.switches = 0  # layer changes made (not the first start)
        self._switching = False  # moved down: nothing forwarded until the new layer's keyframe
        # the layer of each of ``anchors``, and its picture id and TL0PICIDX offsets
        self._anchor_layers: list[tuple[int, int, int]] = []
        self._pid_off = 0
        self._tl0_off = 0
        self._taps = [_LayerTap(self, i) for i in range(len(track.layers))]
        for layer, tap in zip(track.layers, self._taps, strict=True):
            layer.consumers.append(tap)

    # -- the control plane's commands --------------------------------------------------------
    def set_layer(self, layer: int, now: float) -> None:
        """Forward ``layer`` from its next keyframe on (asked for now).

        Up, the current layer goes on until then. Down, it stops at once: a receiver is moved
        down because its link no longer carries the current layer, and every packet more of it
        queues ahead of (or crowds out) the keyframe it now waits for; the picture stands still
        for a round trip and a keyframe, instead of seconds of broken frames."""
        layer = max(0, min(layer, len(self.track.layers) - 1))
        if layer == self._target:
            return
        self._target = layer
        if layer != self.current and not self.paused:
            if self.current is not None and layer < self.current:
                self.current = None
                self._switching = True
            self.keyframe_asked = now
            self.track.layers[layer].request_keyframe(now)

    @property
    def target(self) -> int:
        """The layer asked for."""
        return self._target

    @property
    def layer(self) -> int | None:
        """The layer forwarded now (None: none yet, or paused)."""
        return None if self.paused else self.current

    def set_paused(self, paused: bool, now: float) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self.current = None
        else:
            self.keyframe_asked = now
            self.track.layers[self._target].request_keyframe(now)

    def request_keyframe(self, now: float) -> None:
        layer = self.current if self.current is not None else self._target
        self.track.layers[layer].request_keyframe(now)

    def source_sr(self) -> tuple[int, int, float] | None:
        if self.current is None:
            return None
        return self.track.layers[self.current].sr

    # -- the packet path ---------------------------------------------------------------------
    def forward(self, packet: RtpPacket, now: float) -> None:
        raise TypeError("a simulcast consumer is fed by layer (forward_layer)")

    def forward_layer(self, packet: RtpPacket, now: float, layer: int) -> None:
        if self.paused:
            return
        current = self.current
        target = self._target
        if layer == current:  # forwarded until the target's keyframe comes
            anchor = self._anchor
            if anchor is None or (packet.seq - anchor[0]) & 0xFFFF >= 0x8000:
                self._counters.drop("before_anchor")
                return
            self._emit(packet, anchor, now)
            return
        if current is None:
            target = self._start_layer()
        if layer != target:
            return  # another layer: not for this receiver
        if not self.out.sink.ready():
            return
        if packet.keyframe and packet.frame_start:
            self._switch(packet, now, layer)
            return
        if current is None and self._replay_layer(packet, now, layer):
            return
        if now - self.keyframe_asked > KEYFRAME_ASK_INTERVAL:
            self.keyframe_asked = now
            self.track.layers[layer].request_keyframe(now)
        if current is None:
            self._counters.drop("waiting_keyframe")

    def _start_layer(self) -> int:
        """The layer to start on: the target, or while the target has never been heard of (a
        publisher that sends fewer layers than offered, a camera too small for the top one),
        the best one below it that has."""
        layers = self.track.layers
        for index in range(self._target, 0, -1):
            if layers[index].stats.started:
                return index
        return 0

    def _switch(self, packet: RtpPacket, now: float, layer: int) -> None:
        """Forward ``layer`` from ``packet`` (its keyframe) on."""
        self._emit(packet, self._begin_layer(packet, now, layer), now)

    def _begin_layer(self, packet: RtpPacket, now: float, layer: int) -> tuple[int, int, int]:
        """Make ``layer`` the current one from ``packet`` (a keyframe) on: a new anchor, and the
        picture id / TL0PICIDX offsets that continue the stream; returns the anchor."""
        if self.current is not None or self._switching:
            self.switches += 1
            self._counters.layer_switches += 1
            self._switching = False
        self.current = layer
        anchor = self._start_anchor(packet, now)
        out = self.out
        pid_pos, pid_len, tl0_pos = packet.picture
        if pid_len and out.last_pid is not None:
            self._pid_off = out.last_pid + 1 - _read_pid(packet.data, pid_pos, pid_len)
        else:
            self._pid_off = 0
        if tl0_pos >= 0 and out.last_tl0 is not None:
            self._tl0_off = out.last_tl0 + 1 - packet.data[tl0_pos]
        else:
            self._tl0_off = 0
        self._anchor_layers.append((layer, self._pid_off, self._tl0_off))
        del self._anchor_layers[:-len(self.anchors)]
        return anchor

    def _replay_layer(self, packet: RtpPacket, now: float, layer: int) -> bool:
        """Start from the layer's cached keyframe when it is recent (as ``_replay_keyframe``)."""
        return self._replay_recent(self.track.layers[layer], packet, now,
                                   lambda first: self._begin_layer(first, now, layer))

    def _emit(self, packet: RtpPacket, anchor: tuple[int, int, int], now: float) -> None:
        """Send with the picture id and TL0PICIDX moved on by this anchor's offsets (a copy of
        the packet only when an offset is not 0), and note the last ones sent on the stream:
        a later switch continues from them."""
        out = self.out
        if self._pid_off or self._tl0_off:
            patched = _renumber(packet.data, packet.picture, self._pid_off, self._tl0_off)
            if patched is not None:
                data, out.last_pid, out.last_tl0 = patched
                copy = RtpPacket(data, packet.marker, packet.pt, packet.seq, packet.ts,
                                 packet.ssrc, packet.payload_offset, packet.ext)
                copy.shared_ext = packet.shared_ext
                packet = copy
        else:
            data = packet.data
            pid_pos, pid_len, tl0_pos = packet.picture
            out.last_pid = _read_pid(data, pid_pos, pid_len) if pid_len else None
            out.last_tl0 = data[tl0_pos] if tl0_pos >= 0 else None
        super()._emit(packet, anchor, now)

    def retransmit(self, out_seq: int, now: float, rtt: float | None = None) -> bool:
        """Answer a NACK from the cache of the layer that was forwarded at ``out_seq``, with
        the picture ids it was first sent with."""
        if self.closed:
            return False
        anchors = self.anchors
        if anchors and (out_seq - anchors[-1].out_start) & 0xFFFF >= 0x8000:
            # before the keyframe the current layer started with: the receiver decodes from
            # that keyframe on, and the old layer's packets would only crowd the link that
            # made it switch (its NACKs go on until that keyframe is complete)
            self._counters.drop("nack_before_keyframe")
            return False
        if not self.out.may_retransmit(out_seq, now, rtt):
            self._counters.retransmits_suppressed += 1
            return False
        for past, (layer, pid_off, tl0_off) in zip(reversed(self.anchors),
                                                   reversed(self._anchor_layers), strict=False):
            if (out_seq - past.out_start) & 0xFFFF < 0x8000:
                in_seq = (out_seq - past.seq_offset) & 0xFFFF
                cache = self.track.layers[layer].cache
                packet = cache.get(in_seq) if cache is not None else None
                if packet is None or (in_seq - past.in_start) & 0xFFFF >= 0x8000:
                    return False
                data = packet.data
                patched = _renumber(data, packet.picture, pid_off, tl0_off)
                if patched is not None:
                    data = patched[0]
                out = self.out
                out.send_extra(data[0], packet.marker, self._pt, out_seq,
                               (packet.ts + past.ts_offset) & 0xFFFFFFFF, out.ssrc,
                               packet.shared_ext, memoryview(data)[packet.payload_offset:], now)
                self._counters.retransmitted += 1
                return True
        return False

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for layer, tap in zip(self.track.layers, self._taps, strict=True):
            if tap in layer.consumers:
                layer.consumers.remove(tap)


def _renumber(data: bytes, picture: tuple[int, int, int], pid_off: int,
              tl0_off: int) -> tuple[bytes, int | None, int | None] | None:
    """``data`` with the VP8 descriptor's picture id and TL0PICIDX moved on by the offsets,
    and the new values (None for a field the packet does not carry); None when it carries
    neither."""
    pid_pos, pid_len, tl0_pos = picture
    if not pid_len and tl0_pos < 0:
        return None
    patched = bytearray(data)
    pid = tl0 = None
    if pid_len == 2:
        pid = (_read_pid(data, pid_pos, 2) + pid_off) & 0x7FFF
        patched[pid_pos] = 0x80 | pid >> 8
        patched[pid_pos + 1] = pid & 0xFF
    elif pid_len == 1:
        pid = (data[pid_pos] + pid_off) & 0x7F
        patched[pid_pos] = pid
    if tl0_pos >= 0:
        tl0 = (data[tl0_pos] + tl0_off) & 0xFF
        patched[tl0_pos] = tl0
    return bytes(patched), pid, tl0


def _read_pid(data: bytes, pos: int, length: int) -> int:
    if length == 2:
        return (data[pos] & 0x7F) << 8 | data[pos + 1]
    return data[pos] & 0x7F
