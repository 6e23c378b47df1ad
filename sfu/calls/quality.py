"""Bandwidth in a live call: estimate each link, allocate, degrade with reasons.

One ``QualityController`` per call, ticked once a second by the calls manager. Each tick it feeds
the per-participant estimators (sfu/bandwidth) with what the media endpoints measured, runs the
allocator and the smoother, then applies the result: paused video is not forwarded (resumed
with a keyframe request), publishers are capped with REMB, and every change of a receiver's
level reaches that receiver as a ``quality`` message and the metrics.

Pure policy lives in sfu/bandwidth; this module only moves numbers between it and the media.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from sfu.bandwidth import (
    Allocation,
    AllocationSmoother,
    BandwidthSettings,
    Level,
    Receiver,
    SmoothedUpdate,
    Stream,
    allocate,
)
from sfu.bandwidth.probe import ProbeController
from sfu.calls.call import Call, Participant
from sfu.calls.events import CallEvents, QualityNotice
from sfu.calls.media import MediaProducer

log = logging.getLogger(__name__)

AUDIO_KBPS = 40.0  # nominal Opus rate before it is measured
VIDEO_KBPS = 500.0  # nominal video rate before it is measured
MAX_VIDEO_KBPS = 2500.0
RESUME_SLACK = 1.3  # a paused video resumes capped once its publisher sends at most this x cap  # the REMB a publisher gets when nobody needs it to send less


UPGRADE_HOLD_S = 5.0  # a better level is applied only after it held this long
URGENT_MIN_S = 0.3  # a reallocation for a congested link at most this long after the last one
# a simulcast publisher is not capped for its weakest receiver (each receiver gets the layer its
# link carries); the REMB only bounds all its layers together
MAX_SIMULCAST_KBPS = 4000.0
LAYER_ACTIVE_KBPS = 5.0  # a layer sending less than this is not being sent
LAYER_RATE_WINDOW_S = 3.0  # a simulcast layer's rate is measured over this long
LAYER_GONE_S = 5.0  # a layer not sent this long although asked for is no longer offered
LAYER_STEP = 2.0  # a higher layer (4x the pixels) is taken to need at least 2x the one below


class QualityController:
    def __init__(self, call: Call, settings: BandwidthSettings, events: CallEvents,
                 on_urgent: Callable[[], None] | None = None) -> None:
        self.call = call
        # asks the owner to run :meth:`urgent` soon (off the packet path): a receiver's link
        # just showed congestion, and a second's wait would freeze its video
        self.on_urgent = on_urgent
        self.settings = settings
        self.events = events
        self.smoother = AllocationSmoother(upgrade_hold_s=UPGRADE_HOLD_S)
        self.speaker: str | None = None
        self._last_tick: float | None = None
        self._caps: dict[str, float] = {}  # producer id -> the REMB cap sent to its publisher
        self._ignored_cap: dict[str, int] = {}  # producer id -> ticks spent well above its cap
        self._resume_kbps: dict[str, float] = {}  # receiver -> what its cheapest paused video needs
        self._probes: dict[str, ProbeController] = {}  # receiver -> its downlink's probing
        self._told: dict[str, str] = {}  # receiver -> the level it was last told
        # simulcast tracks (by producer id): bytes per layer at the last tick, each layer's
        # smoothed rate while it was sent, the layers told to its publisher (dynacast), and
        # per receiver the layers it was last told it gets (``video_layers``)
        self._layer_octets: dict[str, list[int]] = {}
        self._layer_kbps: dict[str, dict[int, float]] = {}
        self._layer_history: dict[str, deque[tuple[float, list[int]]]] = {}
        self._layer_silent: dict[str, dict[int, float]] = {}  # layer -> not sent since
        self._layers_on: dict[str, dict[str, bool]] = {}
        self._told_layers: dict[str, dict[str, Any]] = {}

    def remembered(self) -> set[str]:
        """The participant and producer ids this keeps anything for (only those present)."""
        return (set(self._caps) | set(self._ignored_cap) | set(self._probes) | set(self._told)
                | set(self._layer_octets) | set(self._layer_kbps) | set(self._layers_on)
                | set(self._layer_history) | set(self._layer_silent)
                | set(self._told_layers))

    def _forget_absent(self, participants: list[Participant]) -> None:
        """Drop what was kept for people (and their streams) no longer in the call: a room can
        stay open all day while people come and go."""
        present = {p.id for p in participants}
        streams = {producer.id for p in participants for producer in p.endpoint.producers.values()}
        for table, keep in ((self._probes, present), (self._told, present),
                            (self._told_layers, present),
                            (self._caps, streams), (self._ignored_cap, streams),
                            (self._layer_octets, streams), (self._layer_kbps, streams),
                            (self._layer_history, streams), (self._layer_silent, streams),
                            (self._layers_on, streams)):
            for key in [k for k in table if k not in keep]:
                del table[key]

    # -- the tick ------------------------------------------------------------------------------------
    def urgent(self, now: float) -> None:
        """Reallocate now, between ticks (a link showed congestion), unless a tick just ran."""
        if self._last_tick is None or now - self._last_tick >= URGENT_MIN_S:
            log.info("reallocating at %.3f, %.3f s after the last tick: a link showed congestion",
                     now, now - self._last_tick if self._last_tick is not None else 0.0)
            self.tick(now)

    def _congested(self, now: float) -> None:
        log.debug("a link showed congestion at %.3f: reallocating", now)
        if self.on_urgent is not None:
            self.on_urgent()

    def tick(self, now: float) -> None:
        elapsed = 1.0 if self._last_tick is None else max(0.2, now - self._last_tick)
        self._last_tick = now
        participants = self.call.members()
        self._forget_absent(participants)
        streams: list[Stream] = []
        loudest: tuple[float, str] | None = None
        for p in participants:
            link = p.link
            if link.on_congestion is None:
                link.on_congestion = self._congested
            link.feed_downlink(now, elapsed, self._resume_kbps.get(p.id))
            link.replay()
            for producer in p.endpoint.producers.values():
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
            if p.probing:
                continue  # nobody receives a probing newcomer yet
            for producer in p.endpoint.producers.values():
                priority = (2 if p.role == "patient" else 0) + (1 if p.id == self.speaker else 0)
                rate = link.stream_kbps[producer.id]
                minimum = float(self.settings.min_audio_kbps if producer.kind == "audio"
                                else self.settings.min_video_kbps)
                if producer.kind == "video" and self._ignores_cap(producer.id, rate):
                    minimum = rate  # it cannot be capped: forward it whole, or pause it
                kind: Literal["audio", "video"] = "audio" if producer.kind == "audio" else "video"
                layers = self._layers(producer, now, elapsed)
                if layers:
                    streams.append(Stream(producer.id, p.id, kind, layers[-1][1], layers[0][1],
                                          priority, layers))
                    continue
                streams.append(Stream(producer.id, p.id, kind, max(rate, minimum * 0.5),
                                      min(minimum, rate), priority))
        if loudest is not None:
            self.speaker = loudest[1]
        for p in participants:
            self.events.estimates(p.link.up_kbps(now), p.link.down_kbps(now), p.link.rtt)
        subscriptions = {p.id: [producer.id for producer in p.endpoint.subscribed()]
                         for p in participants}
        full = {s.id: s.full_kbps for s in streams}
        demand = {p.id: sum(full.get(sid, 0.0) for sid in subscriptions[p.id])
                  for p in participants}
        self._judge_probes(participants, now)
        receivers = [Receiver(p.id, p.link.allocation_down_kbps(now, demand[p.id]))
                     for p in participants]
        proposed = allocate(receivers, streams, subscriptions)
        update = self.smoother.update(now, proposed, streams)
        self._apply(participants, update, streams, now,
                    {r.id: r.downlink_kbps for r in receivers})
        self._plan_probes(participants, update.allocation, demand, now)

    # -- simulcast ----------------------------------------------------------------------------------
    def _layers(self, producer: MediaProducer, now: float,
                elapsed: float) -> tuple[tuple[int, float], ...]:
        """The layers of a simulcast track that can be forwarded, (index, kbps), lowest first:
        every layer measured once, at the rate it had when sent, unless it has not been sent
        for ``LAYER_GONE_S`` although nothing asked its publisher to stop it (its browser
        dropped it: a weak uplink, a small camera). A layer dynacast switched off stays
        available (the allocation decides who would take it, and it is switched on for them).
        () for a single encoding, or before any layer is sent."""
        octets = list(producer.layer_octets())
        if not octets:
            return ()
        before = self._layer_octets.get(producer.id, octets)
        self._layer_octets[producer.id] = octets
        known = self._layer_kbps.setdefault(producer.id, {})
        silent = self._layer_silent.setdefault(producer.id, {})
        told = self._layers_on.get(producer.id, {})
        rids = list(producer.rids)
        # each layer's rate over the last LAYER_RATE_WINDOW_S it was sent: a keyframe (one
        # is asked for at every switch) doubles a layer's rate for a second, which must not
        # make the lowest layers look too big to fit and pause someone's video
        history = self._layer_history.setdefault(producer.id, deque())
        history.append((elapsed, [now_octets - then for now_octets, then
                                  in zip(octets, before, strict=False)]))
        while sum(dt for dt, _ in history) - history[0][0] >= LAYER_RATE_WINDOW_S:
            history.popleft()
        out: list[tuple[int, float]] = []
        for index, (now_octets, then) in enumerate(zip(octets, before, strict=False)):
            kbps = (now_octets - then) * 8 / 1000 / elapsed
            if kbps > LAYER_ACTIVE_KBPS:
                silent.pop(index, None)
                sent = [(dt, deltas[index]) for dt, deltas in history
                        if index < len(deltas) and deltas[index] * 8 / 1000 / dt > LAYER_ACTIVE_KBPS]
                known[index] = sum(d for _, d in sent) * 8 / 1000 / sum(dt for dt, _ in sent)
            elif index in known and told.get(rids[index]) is not False:
                since = silent.setdefault(index, now)
                if now - since > LAYER_GONE_S:
                    del known[index]  # its publisher no longer sends it
            elif told.get(rids[index]) is False:
                silent.pop(index, None)  # off by our doing: available, not gone
            if index in known:
                # a layer measured while it started up (or long ago) may look smaller than it
                # is: a higher layer is at least LAYER_STEP times the one below it
                floor = LAYER_STEP * out[-1][1] if out else 0.0
                out.append((index, max(known[index], floor)))
        return tuple(out)

    def _dynacast(self, participants: list[Participant]) -> None:
        """Tell each simulcast publisher which of its layers anyone receives (the lowest is
        always kept on: a newcomer starts on it at once); it stops encoding the others."""
        wanted: dict[str, set[int]] = {}
        for p in participants:
            for consumer in p.endpoint.consumers():
                if consumer.producer.rids and not consumer.paused:
                    layers = wanted.setdefault(consumer.producer.id, set())
                    for layer in (consumer.target, consumer.layer):
                        if layer is not None:
                            layers.add(layer)
        for p in participants:
            video = p.endpoint.producers.get("video")
            if video is None or not video.rids:
                continue
            rids = list(video.rids)
            # a layer never measured stays on: until its rate is known nobody can be given it
            measured = self._layer_kbps.get(video.id, {})
            if p.probing:
                on = {rid: True for rid in rids}
            else:
                chosen = wanted.get(video.id, set()) | {0}
                on = {rid: index in chosen or index not in measured
                      for index, rid in enumerate(rids)}
            if self._layers_on.get(video.id) != on:
                log.debug("layers of %s: %s (wanted %s, measured %s)", video.id, on,
                          sorted(wanted.get(video.id, set())), measured)
                self._layers_on[video.id] = on
                p.client.publish_layers(on)

    def _tell_layers(self, participants: list[Participant]) -> None:
        """Tell each receiver which layer it gets of each video, when that changed."""
        for p in participants:
            layers: dict[str, Any] = {}
            for consumer in p.endpoint.consumers():
                producer = consumer.producer
                if producer.kind != "video":
                    continue
                if consumer.paused:
                    layers[producer.owner] = None
                    continue
                rids = list(producer.rids)
                sizes = list(producer.layer_sizes())
                index = consumer.layer if consumer.layer is not None else consumer.target
                at = index if index is not None and index < len(sizes) else 0
                size = sizes[at] if sizes else None
                layers[producer.owner] = {
                    "rid": rids[at] if rids else None,
                    "width": None if size is None else size[0],
                    "height": None if size is None else size[1]}
            if self._told_layers.get(p.id, {}) != layers:  # nothing to tell before any video
                self._told_layers[p.id] = layers
                p.client.video_layers(layers)

    # -- probing a limited downlink (sfu/bandwidth/probe.py) ------------------------------------
    def _judge_probes(self, participants: list[Participant], now: float) -> None:
        """A probe that proved its rate lets the estimate jump there and the upgrades it allows
        apply now, not after the smoother's hold."""
        for p in participants:
            probe = self._probes.get(p.id)
            if probe is None:
                continue
            # a probe's own padding counts: transport-cc feedback reports it lost or not, packet
            # by packet, within 100 ms; with it, receiver reports (a second or more behind, on
            # media streams only) are not the cluster's evidence (libwebrtc judges probes on
            # transport feedback alone)
            feedback_loss = p.link.take_feedback_loss()
            if p.link.gcc is not None:
                lossy = feedback_loss > 0.02
            else:
                lossy = p.link.loss > 0.02
            probe.observe(lossy=lossy, overusing=p.link.overusing)
            # with transport-cc the cluster's arrival rate says what the link carried
            received = p.link.probe_received_kbps()
            proved = probe.judge(now, received)
            if probe.verdict == "spoiled":
                log.info("probe of %s at %.0f kbit/s failed: %s (receiver reports %.1f %%, "
                         "transport-cc %.1f %% lost)", p.id, probe.last_rate,
                         "loss" if lossy else "delay overuse", 100 * p.link.loss,
                         100 * feedback_loss, extra=p.log_context())
            elif probe.verdict == "limit":
                log.info("probe of %s at %.0f kbit/s arrived at %.0f kbit/s: the link's limit",
                         p.id, probe.last_rate, received or 0.0, extra=p.log_context())
            if proved is None:
                continue
            p.link.on_probe(now, proved)  # raises the estimate only
            if probe.last_carried:  # a measure of the limit is no reason to hurry upgrades
                self.smoother.confirm(p.id, now)

    def _plan_probes(self, participants: list[Participant], allocation: Allocation,
                     demand: dict[str, float], now: float) -> None:
        limited = {rid for (rid, _), chosen in allocation.streams.items()
                   if chosen.level is not Level.FULL}
        for p in participants:
            if p.probing:
                continue
            probe = self._probes.setdefault(p.id, ProbeController())
            estimate = p.link.down_kbps(now)
            # what everything needs in full is measured from publishers that may be capped for
            # this very receiver (a capped publisher's rate is its cap): while it is limited,
            # ask for at least half again the estimate, or a link that came back would only be
            # proven a few percent at a time
            target = 1.1 * demand[p.id]
            if estimate is not None and p.id in limited:
                target = max(target, 1.5 * estimate)
            rate = probe.plan(now, estimate_kbps=estimate,
                              target_kbps=target, limited=p.id in limited,
                              clean=p.link.loss <= 0.02 and not p.link.overusing,
                              sent_kbps=p.link.sent_kbps)
            if rate is not None:
                padding = max(0.0, rate - p.link.sent_kbps)
                log.info("probing the downlink of %s at %.0f kbit/s (%.0f of padding)", p.id,
                         rate, padding, extra=p.log_context())
                p.link.start_probe(now, probe.settings.duration_s,
                                   probe.settings.duration_s + probe.settings.settle_s)
                p.endpoint.send_padding(padding, probe.settings.duration_s)

    def _publisher_caps(self, allocation: Allocation, streams: list[Stream],
                        budgets: dict[str, float | None]) -> dict[str, float]:
        """What each video publisher may send (REMB): for every receiver of its stream, what
        that receiver was allocated, and for a stream forwarded in full to a receiver with a
        known budget, its share of that budget's spare. A capped publisher's measured rate is
        its cap, so "full" alone would lift the cap at once and flood the link it was set for;
        this way the publisher grows only as the receiver's estimate does."""
        kinds = {s.id: s.kind for s in streams if not s.layers}  # simulcast: never capped
        used: dict[str, float] = {}
        videos: dict[str, int] = {}
        for (rid, sid), chosen in allocation.streams.items():
            used[rid] = used.get(rid, 0.0) + chosen.kbps
            if kinds.get(sid) == "video" and chosen.level is not Level.PAUSED:
                videos[rid] = videos.get(rid, 0) + 1
        caps: dict[str, float] = {}
        for (rid, sid), chosen in allocation.streams.items():
            if kinds.get(sid) != "video" or chosen.level is Level.PAUSED:
                continue
            if chosen.level is Level.CAPPED:
                cap = max(chosen.kbps, self.settings.min_video_kbps)
            else:
                budget = budgets.get(rid)
                if budget is None:
                    continue
                spare = max(0.0, budget - used.get(rid, 0.0)) / max(1, videos.get(rid, 1))
                cap = max(chosen.kbps + spare, self.settings.min_video_kbps)
            caps[sid] = min(caps.get(sid, MAX_VIDEO_KBPS), cap)
        return caps

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

    def _apply(self, participants: list[Participant], update: SmoothedUpdate,
               streams: list[Stream], now: float, budgets: dict[str, float | None]) -> None:
        allocation = update.allocation
        by_id = {p.id: p for p in participants}
        caps = self._publisher_caps(allocation, streams, budgets)
        measured = {s.id: s.full_kbps for s in streams}
        for p in participants:
            for consumer in p.endpoint.consumers():
                producer = consumer.producer
                given = allocation.streams.get((p.id, producer.id))
                if given is None or producer.kind != "video":
                    continue
                pause = given.level is Level.PAUSED
                if given.layer is not None:
                    consumer.set_layer(given.layer, now)
                cap = caps.get(producer.id)
                if not pause and consumer.paused and cap is not None \
                        and measured.get(producer.id, 0.0) > RESUME_SLACK * cap:
                    # resuming at a cap its publisher does not keep yet (it was sending in full
                    # to the others): the REMB below asks it to; resume once it follows, or
                    # the whole rate would flood the link that just recovered
                    pause = True
                consumer.set_paused(pause, now)
        self._dynacast(participants)
        self._tell_layers(participants)
        for p in participants:
            video = p.endpoint.producers.get("video")
            if video is not None and video.rids:
                video.send_remb(MAX_SIMULCAST_KBPS)
            elif video is not None:
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
            if found is None or str(change.level) == self._told.get(found.id, "good"):
                continue
            if change.level == "degraded" and not found.link.constrained:
                # capped while its estimate still ramps up (a new link, probing): not a poor
                # link, and nothing to tell the person about
                continue
            link = found.link
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
            level = str(change.level)
            self._told[found.id] = level
            log.info("quality of %s: %s (%s); down %s kbit/s, up %s kbit/s, loss %.3f, "
                     "%d video(s) paused", found.id, level, reason,
                     "unknown" if down is None else f"{down:.0f}",
                     "unknown" if up is None else f"{up:.0f}", link.loss, len(paused),
                     extra=found.log_context())
            found.client.quality(QualityNotice(found.id, level, reason, {
                "downlink_kbps": None if down is None else round(down),
                "uplink_kbps": None if up is None else round(up),
                "rtt_ms": None if link.rtt is None else round(link.rtt * 1000),
                "loss": round(link.loss, 3), "paused": paused,
                "layers": self._told_layers.get(found.id, {}),
            }))
            self.events.quality_changed(found.id, level)
