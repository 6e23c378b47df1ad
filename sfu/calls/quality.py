"""Bandwidth in a live call: estimate each link, allocate, degrade with reasons.

One ``QualityController`` per call, ticked once a second by the call's owner. Each tick it feeds
the per-participant estimators (sfu/bandwidth) with what the media endpoints measured, runs the
allocator and the smoother, then applies the result: paused video is not forwarded (resumed
with a keyframe request), publishers are capped with REMB, and every change of a receiver's
level reaches that receiver as a ``quality`` message and the metrics.

Pure policy lives in sfu/bandwidth; this module only moves numbers between it and the media.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.bandwidth import (
    AllocationSmoother,
    DownlinkEstimator,
    Level,
    Receiver,
    Stream,
    UplinkEstimator,
    allocate,
)
from sfu.calls.call import Call, Participant

AUDIO_KBPS = 40.0  # nominal Opus rate before it is measured
VIDEO_KBPS = 500.0  # nominal video rate before it is measured
MAX_VIDEO_KBPS = 2500.0  # the REMB a publisher gets when nobody needs it to send less


@dataclass
class QualitySettings:
    min_video_kbps: float = 150
    min_audio_kbps: float = 40
    upgrade_hold_s: float = 5.0


@dataclass
class Link:
    """What is known about one participant's links."""

    uplink: UplinkEstimator = field(default_factory=UplinkEstimator)
    downlink: DownlinkEstimator = field(default_factory=DownlinkEstimator)
    out_octets: dict[int, int] = field(default_factory=dict)  # per outgoing SSRC, at the last tick
    rr_loss: dict[int, float] = field(default_factory=dict)  # per outgoing SSRC, since the last tick
    rr_jitter: list[float] = field(default_factory=list)
    reports: int = 0
    ticks_reported: int = 0
    silent: dict[int, int] = field(default_factory=dict)  # SSRC -> ticks sent without a report
    rtt: float | None = None
    goodput_kbps: float | None = None
    loss: float = 0.0
    producer_octets: dict[str, int] = field(default_factory=dict)
    stream_kbps: dict[str, float] = field(default_factory=dict)
    watched: dict[str, Any] = field(default_factory=dict)  # producer id -> its video producer
    constrained: bool = False

    # -- what the media endpoints tell ------------------------------------------------------
    def attach(self, endpoint: Any) -> None:
        """Listen to the receiver reports and REMB of this participant's endpoint."""
        endpoint.listen_reports(lambda block, now, rtt: self.on_report(block, rtt))
        endpoint.listen_remb(lambda bps, now: self.downlink.on_remb(now, bps / 1000))

    def on_report(self, block: Any, rtt: float | None) -> None:
        self.reports += 1
        self.rr_loss[block.ssrc] = max(self.rr_loss.get(block.ssrc, 0.0), block.fraction_lost / 256)
        self.rr_jitter.append(block.jitter / 90.0)  # video clock: ms
        if rtt is not None:
            self.rtt = rtt

    def observe(self, producer: Any) -> None:
        """Have ``producer`` record its arriving video packets; they are replayed into the
        uplink estimator off the packet path (:meth:`replay`)."""
        if producer.kind != "video" or self.watched.get(producer.id) is producer:
            return
        self.replay()  # what a replaced producer recorded comes first
        producer.watch_arrivals()
        self.watched[producer.id] = producer

    def replay(self) -> None:
        uplink = self.uplink
        for producer in self.watched.values():
            for arrival in producer.take_arrivals():
                uplink.on_packet(arrival.at, arrival.seq, arrival.size, arrival.abs_send_time)

    def feed_downlink(self, endpoint: Any, now: float, elapsed: float,
                      margin_kbps: float | None = None) -> None:
        """Feed what was sent since the last tick and what the receiver reported on it. Loss is
        weighted by the bytes sent on each stream: a shaped link drops big video packets far
        more than small audio ones."""
        sent = 0
        delivered = 0.0
        reported = False
        for ssrc, octets in endpoint.sent_octets().items():
            delta = octets - self.out_octets.get(ssrc, octets)
            self.out_octets[ssrc] = octets
            sent += delta
            loss = self.rr_loss.get(ssrc)
            if loss is not None:
                reported = True
                self.silent.pop(ssrc, None)
            elif delta > 0:
                # sent for two ticks and never reported on: nothing of it arrived
                self.silent[ssrc] = self.silent.get(ssrc, 0) + 1
                if self.silent[ssrc] >= 2:
                    loss = 1.0
            delivered += delta * (1.0 - (loss or 0.0))
        if sent > 0:
            self.downlink.on_sent(now, sent)
        if margin_kbps is not None:
            self.downlink.margin_kbps = max(self.downlink.settings.margin_kbps, margin_kbps)
        if reported:
            self.ticks_reported += 1
            loss = 1.0 - delivered / sent if sent > 0 else max(self.rr_loss.values())
            jitter = max(self.rr_jitter) if self.rr_jitter else 0.0
            self.rr_loss.clear()
            self.rr_jitter.clear()
            self.loss = max(0.0, loss)
            self.downlink.on_receiver_report(now, self.loss, jitter, self.rtt)
            self.goodput_kbps = delivered * 8 / 1000 / elapsed if sent > 0 else None

    # -- what it concludes ---------------------------------------------------------------------
    def down_kbps(self, now: float) -> float | None:
        estimate = self.downlink.estimate_kbps(now)
        if estimate is not None and self.goodput_kbps is not None and self.loss > 0.1:
            estimate = min(estimate, self.goodput_kbps * 1.1)
        return estimate

    def up_kbps(self, now: float) -> float | None:
        self.replay()
        return self.uplink.estimate_kbps(now)

    def allocation_down_kbps(self, now: float, demand_kbps: float) -> float | None:
        """The downlink the allocator works with: unconstrained (None) until the link shows loss,
        and again once the estimate has grown past what everything at full rate needs. A
        loss-based estimate only knows what was sent: held against a link that never lost a
        packet, it would pause video for everyone who just joined."""
        estimate = self.down_kbps(now)
        if self.loss > 0.05:
            self.constrained = True
        if not self.constrained or estimate is None:
            return None
        if estimate >= 1.1 * demand_kbps and self.loss < 0.02:
            self.constrained = False
            return None
        return estimate

    # What admission may hold against a link: an estimate counts only with evidence of a limit
    # (loss, or delay overuse). A link that carried all we sent without loss is not limited by
    # what we happened to send: it stays "unknown" (unconstrained) until it shows its limit.
    def limited_down_kbps(self, now: float) -> float | None:
        return self.down_kbps(now) if self.loss > 0.02 else None

    def limited_up_kbps(self, now: float) -> float | None:
        # loss, not delay alone: a busy event loop on either side makes delay look like overuse
        estimate = self.up_kbps(now)
        return estimate if self.uplink.loss_fraction(now) > 0.02 else None


class QualityController:
    def __init__(self, call: Call, settings: QualitySettings,
                 on_change: Callable[[Participant, str, str, dict[str, Any]], None],
                 on_estimates: Callable[[float | None, float | None, float | None], None]
                 = lambda up, down, rtt: None) -> None:
        self.call = call
        self.settings = settings
        self.on_estimates = on_estimates  # once per participant per tick: up, down (kbit/s), RTT (s)
        self.on_change = on_change
        self.links: dict[str, Link] = {}
        self.smoother = AllocationSmoother(upgrade_hold_s=settings.upgrade_hold_s)
        self.speaker: str | None = None
        self._last_tick: float | None = None
        self._caps: dict[str, float] = {}  # producer id -> the REMB cap sent to its publisher
        self._ignored_cap: dict[str, int] = {}  # producer id -> ticks spent well above its cap
        self._resume_kbps: dict[str, float] = {}  # receiver -> what its cheapest paused video needs

    # -- wiring ------------------------------------------------------------------------------------
    def link(self, participant: Participant) -> Link:
        link = self.links.get(participant.id)
        if link is None:
            link = self.links[participant.id] = Link()
            if participant.endpoint is not None:
                link.attach(participant.endpoint)
        return link

    def forget(self, participant_id: str) -> None:
        self.links.pop(participant_id, None)

    # -- the tick ------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        elapsed = 1.0 if self._last_tick is None else max(0.2, now - self._last_tick)
        self._last_tick = now
        participants = [p for p in [*self.call.participants.values(), *self.call.probing.values()]
                        if p.endpoint is not None]
        streams: list[Stream] = []
        loudest: tuple[float, str] | None = None
        for p in participants:
            link = self.link(p)
            endpoint: Any = p.endpoint
            link.feed_downlink(endpoint, now, elapsed, self._resume_kbps.get(p.id))
            link.replay()
            for producer in endpoint.producers.values():
                link.observe(producer)
                before = link.producer_octets.get(producer.id, producer.octets)
                link.producer_octets[producer.id] = producer.octets
                measured = (producer.octets - before) * 8 / 1000 / elapsed
                nominal = AUDIO_KBPS if producer.kind == "audio" else VIDEO_KBPS
                kbps = measured if measured > 0 else nominal
                link.stream_kbps[producer.id] = kbps
                if producer.kind == "audio":
                    level = producer.take_audio_level()
                    if level is not None and level > 40 and (loudest is None or level > loudest[0]):
                        loudest = (level, p.id)
            if p.id in self.call.probing:
                continue  # nobody receives a probing newcomer yet
            for producer in endpoint.producers.values():
                priority = (2 if p.role == "patient" else 0) + (1 if p.id == self.speaker else 0)
                rate = link.stream_kbps[producer.id]
                minimum = (self.settings.min_audio_kbps if producer.kind == "audio"
                           else self.settings.min_video_kbps)
                if producer.kind == "video" and self._ignores_cap(producer.id, rate):
                    minimum = rate  # it cannot be capped: forward it whole, or pause it
                streams.append(Stream(producer.id, p.id, producer.kind, max(rate, minimum * 0.5),
                                      min(minimum, rate), priority))
        if loudest is not None:
            self.speaker = loudest[1]
        for p in participants:
            link = self.links[p.id]
            self.on_estimates(link.up_kbps(now), link.down_kbps(now), link.rtt)
        subscriptions = {p.id: [producer.id for producer in p.endpoint.subscribed()]  # type: ignore[union-attr]
                         for p in participants}
        full = {s.id: s.full_kbps for s in streams}
        receivers = [Receiver(p.id, self.links[p.id].allocation_down_kbps(
            now, sum(full.get(sid, 0.0) for sid in subscriptions[p.id]))) for p in participants]
        proposed = allocate(receivers, streams, subscriptions)
        update = self.smoother.update(now, proposed, streams)
        self._apply(participants, update, streams, now)

    def _ignores_cap(self, producer_id: str, rate: float) -> bool:
        """A publisher that keeps sending well above the REMB cap it was given (a pre-encoded
        source, a client without REMB support) cannot be capped: budget it at its real rate."""
        cap = self._caps.get(producer_id)
        if cap is None or rate <= 1.1 * cap:
            self._ignored_cap.pop(producer_id, None)
            return False
        if rate > 1.25 * cap:
            self._ignored_cap[producer_id] = self._ignored_cap.get(producer_id, 0) + 1
        return self._ignored_cap.get(producer_id, 0) >= 3

    def _apply(self, participants: list[Participant], update: Any, streams: list[Stream],
               now: float) -> None:
        allocation = update.allocation
        by_id = {p.id: p for p in participants}
        for p in participants:
            endpoint: Any = p.endpoint
            for consumer in endpoint.consumers():
                chosen = allocation.streams.get((p.id, consumer.producer.id))
                if chosen is not None and consumer.producer.kind == "video":
                    consumer.set_paused(chosen.level is Level.PAUSED, now)
        caps: dict[str, float] = {}
        for (_, sid), chosen in allocation.streams.items():
            if chosen.level is Level.CAPPED:
                caps[sid] = min(caps.get(sid, MAX_VIDEO_KBPS),
                                max(chosen.kbps, self.settings.min_video_kbps))
        for p in participants:
            endpoint: Any = p.endpoint  # type: ignore[no-redef]
            video = endpoint.producers.get("video")
            if video is not None:
                cap = caps.get(video.id)
                if cap is None:
                    self._caps.pop(video.id, None)
                else:
                    self._caps[video.id] = cap
                video.send_remb(MAX_VIDEO_KBPS if cap is None else cap)
        rates = {s.id: s.full_kbps for s in streams}
        self._resume_kbps = {}
        for (rid, sid), chosen in allocation.streams.items():
            if chosen.level is Level.PAUSED and sid in rates:
                self._resume_kbps[rid] = min(self._resume_kbps.get(rid, 1e9), rates[sid])
        for change in update.receiver_changes:
            found = by_id.get(change.receiver_id)
            if found is None or (change.previous is None and change.level == "good"):
                continue
            link = self.links[found.id]
            paused = [s.publisher for s in streams if s.kind == "video"
                      and (allocation.streams.get((found.id, s.id)) is not None
                           and allocation.streams[(found.id, s.id)].level is Level.PAUSED)]
            down = link.down_kbps(now)
            up = link.up_kbps(now)
            if change.level == "good":
                reason = "link recovered"
            elif change.level == "audio_only":
                reason = (f"downlink about {down:.0f} kbit/s cannot carry video"
                          if down is not None else "video paused")
            else:
                reason = (f"downlink about {down:.0f} kbit/s: some video reduced or paused"
                          if down is not None else "some video reduced or paused")
            self.on_change(found, str(change.level), reason, {
                "downlink_kbps": None if down is None else round(down),
                "uplink_kbps": None if up is None else round(up),
                "rtt_ms": None if link.rtt is None else round(link.rtt * 1000),
                "loss": round(link.loss, 3), "paused": paused,
            })
