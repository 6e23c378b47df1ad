"""What is known about one participant's links: the state behind its up- and downlink estimates.

A ``Link`` belongs to a participant (or a pre-call test). It listens to its endpoint's receiver
reports and REMB, replays the arrivals its producers recorded into the uplink estimator, and is
fed what was sent to it once per tick. Pure bookkeeping around ``sfu.bandwidth``: every method
that depends on time takes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sfu.bandwidth import DownlinkEstimator, SendSideEstimator, UplinkEstimator
from sfu.calls.media import Feedback, MediaEndpoint, ReportBlock

# Share of one transport feedback's packets reported lost that is news: the link just dropped
CONGESTION_LOSS = 0.1
CONGESTION_REPEAT_S = 0.5  # a congestion signal at most this often
CONGESTION_HOLD_S = 2.0  # what arrived during heavy loss is the budget this long ...
CONGESTION_SHARE = 0.9  # ... this share of it

# Ticks (seconds) a stream may be sent to without any receiver report on it before it counts as
# lost: longer than the slowest report interval a browser uses (Chromium: audio 5 s, x0.5-1.5).
SILENT_LOSS_TICKS = 10


@dataclass
class Link:
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
    watched: set[str] = field(default_factory=set)  # producer ids whose arrivals are recorded
    constrained: bool = False
    endpoint: MediaEndpoint | None = None
    # with transport-cc (browsers): the send-side estimate from its feedback (GCC)
    gcc: SendSideEstimator | None = None
    sent_kbps: float = 0.0  # media sent to the participant over the last tick
    overused: bool = False  # the send-side estimator has seen the queue towards it grow
    feedback_lost: int = 0  # packets transport-cc feedback reported lost / on, since taken
    feedback_seen: int = 0
    # a probe cluster being measured: what arrived of the packets sent in its window
    probe_window: tuple[float, float] | None = None
    probe_bytes: int = 0
    probe_packets: int = 0
    probe_first: float | None = None  # first and last arrival, on the receiver's clock
    probe_last: float | None = None
    # called (with the time) when transport-cc feedback first shows the link congested (the
    # send-side estimator starts overusing, or a feedback reports heavy loss): its owner may
    # reallocate now instead of at the next tick. At most every CONGESTION_REPEAT_S.
    on_congestion: Callable[[float], None] | None = None
    congested_at: float = -1e9
    # after a feedback with heavy loss: the rate that arrived, the budget until then
    congestion_kbps: float | None = None
    congestion_until: float = 0.0
    probe_hold_until: float = 0.0  # a probe cluster and its settling: loss then is the probe's

    # -- what the media endpoints tell ------------------------------------------------------
    def attach(self, endpoint: MediaEndpoint) -> None:
        """Listen to the receiver reports and REMB of this participant's endpoint, and watch
        what arrives from it."""
        self.endpoint = endpoint
        endpoint.listen_reports(self.on_report)
        endpoint.listen_remb(lambda bps, now: self.downlink.on_remb(now, bps / 1000))
        endpoint.listen_transport_feedback(self.on_transport_feedback)

    def on_transport_feedback(self, results: Sequence[Feedback], now: float) -> None:
        if self.gcc is None:
            self.gcc = SendSideEstimator()
        was_overusing = self.gcc.state == "overusing"
        self.gcc.on_feedback(now, results)
        if self.gcc.state == "overusing":
            self.overused = True
        lost = [r[3] for r in results].count(None)
        self.feedback_seen += len(results)
        self.feedback_lost += lost
        # (a probe cluster's own loss is its failure, not the link's: see start_probe)
        heavy_loss = (len(results) >= 10 and lost > CONGESTION_LOSS * len(results)
                      and now >= self.probe_hold_until)
        if heavy_loss:
            acked = self.gcc.acknowledged_kbps
            self.congestion_kbps = (acked if acked is not None
                                    else self.sent_kbps * (1.0 - lost / len(results)))
            self.congestion_until = now + CONGESTION_HOLD_S
        if self.on_congestion is not None and now - self.congested_at >= CONGESTION_REPEAT_S \
                and now >= self.probe_hold_until and (
                    (self.gcc.state == "overusing" and not was_overusing) or heavy_loss):
            self.congested_at = now
            self.on_congestion(now)
        window = self.probe_window
        if window is not None and results and results[0][1] > window[1]:
            # results come in sequence order, i.e. send order: nothing more of the cluster
            # can be reported, and the per-packet loop below need not run again until the next
            window = self.probe_window = None
        if window is not None:
            for _, sent_at, size, arrival in results:
                if arrival is not None and window[0] <= sent_at <= window[1]:
                    self.probe_bytes += size
                    self.probe_packets += 1
                    if self.probe_first is None or arrival < self.probe_first:
                        self.probe_first = arrival
                    if self.probe_last is None or arrival > self.probe_last:
                        self.probe_last = arrival

    def start_probe(self, now: float, seconds: float, hold_s: float = 0.0) -> None:
        """Measure what arrives of everything sent from ``now`` for ``seconds`` (a cluster); for
        ``hold_s`` the send-side estimate does not fall below what it is now (the cluster's own
        queue and loss are its failure, not the link's)."""
        self.probe_window = (now, now + seconds)
        self.probe_hold_until = now + max(seconds, hold_s)
        if self.gcc is not None and hold_s > 0:
            estimate = self.gcc.estimate_kbps(now)
            if estimate is not None:
                self.gcc.hold(now + hold_s, estimate)
        self.probe_bytes = self.probe_packets = 0
        self.probe_first = self.probe_last = None

    def probe_received_kbps(self) -> float | None:
        """The rate at which the last cluster arrived (transport-cc only): what the link
        carried while it was offered more. None without enough feedback on it."""
        first, last = self.probe_first, self.probe_last
        if self.probe_packets < 10 or first is None or last is None or last - first < 0.05:
            return None
        return self.probe_bytes * 8 / 1000 / (last - first)

    def take_feedback_loss(self) -> float:
        """The share of packets (media and padding) transport-cc feedback reported lost since
        the last call; 0 without feedback."""
        seen, lost = self.feedback_seen, self.feedback_lost
        self.feedback_seen = self.feedback_lost = 0
        return lost / seen if seen else 0.0

    def on_report(self, block: ReportBlock, now: float, rtt: float | None) -> None:
        self.reports += 1
        if rtt is not None and self.gcc is not None:
            self.gcc.on_rtt(now, rtt)
        self.rr_loss[block.ssrc] = max(self.rr_loss.get(block.ssrc, 0.0), block.fraction_lost / 256)
        self.rr_jitter.append(block.jitter / 90.0)  # video clock: ms
        if rtt is not None:
            self.rtt = rtt

    def replay(self) -> None:
        """Feed the uplink estimator what the endpoint's video producers recorded since the
        last call (off the packet path); a new producer starts recording here."""
        if self.endpoint is None:
            return
        uplink = self.uplink
        for producer in self.endpoint.producers.values():
            if producer.kind != "video":
                continue
            if producer.id not in self.watched:
                self.watched.add(producer.id)
                producer.watch_arrivals()
                continue
            for at, seq, size, abs_send_time in producer.take_arrivals():
                uplink.on_packet(at, seq, size, abs_send_time)

    def feed_downlink(self, now: float, elapsed: float, margin_kbps: float | None = None) -> None:
        """Feed what was sent since the last tick and what the receiver reported on it. Loss is
        weighted by the bytes sent on each stream: a shaped link drops big video packets far
        more than small audio ones.

        Receivers report on their streams at their own pace, not once per tick: Chromium sends a
        receiver report on a video stream about every second but on an audio stream only about
        every 5 s (3.4-7.1 s measured). A stream with no report this tick is no evidence either
        way and is left out of the weighting; only a stream sent to for ``SILENT_LOSS_TICKS``
        ticks without a single report counts as lost (nothing of it arrives)."""
        if self.endpoint is None:
            return
        sent = 0
        weighed = 0
        delivered = 0.0
        reported = False
        for ssrc, octets in self.endpoint.sent_octets().items():
            delta = octets - self.out_octets.get(ssrc, octets)
            self.out_octets[ssrc] = octets
            sent += delta
            loss = self.rr_loss.get(ssrc)
            if loss is not None:
                reported = True
                self.silent.pop(ssrc, None)
            elif delta > 0:
                self.silent[ssrc] = self.silent.get(ssrc, 0) + 1
                if self.silent[ssrc] >= SILENT_LOSS_TICKS:
                    loss = 1.0
            if loss is None:
                continue  # not reported on this tick: its report will come
            weighed += delta
            delivered += delta * (1.0 - loss)
        self.sent_kbps = sent * 8 / 1000 / elapsed
        if sent > 0:
            self.downlink.on_sent(now, sent)
        if margin_kbps is not None:
            self.downlink.margin_kbps = max(self.downlink.settings.margin_kbps, margin_kbps)
        if reported:
            self.ticks_reported += 1
            loss = 1.0 - delivered / weighed if weighed > 0 else max(self.rr_loss.values())
            jitter = max(self.rr_jitter) if self.rr_jitter else 0.0
            self.rr_loss.clear()
            self.rr_jitter.clear()
            self.loss = max(0.0, loss)
            self.downlink.on_receiver_report(now, self.loss, jitter, self.rtt)
            self.goodput_kbps = sent * (1.0 - self.loss) * 8 / 1000 / elapsed if sent > 0 else None

    def on_probe(self, now: float, kbps: float) -> None:
        """A probe cluster proved the downlink carries ``kbps``."""
        self.downlink.on_probe(now, kbps)
        if self.gcc is not None:
            self.gcc.on_probe(now, kbps)

    # -- what it concludes ---------------------------------------------------------------------
    @property
    def overusing(self) -> bool:
        """The send-side estimator sees the queue towards the participant growing."""
        return self.gcc is not None and self.gcc.state == "overusing"

    def down_kbps(self, now: float) -> float | None:
        if self.gcc is not None:  # transport-cc: the send-side estimate, as libwebrtc's
            estimate = self.gcc.estimate_kbps(now)
            if estimate is not None:
                return estimate
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
        if self.loss > 0.05 or self.overusing or (self.gcc is not None and self.gcc.loss > 0.05):
            self.constrained = True
        if self.congestion_kbps is not None and now < self.congestion_until:
            # a feedback just reported heavy loss: what arrived is what the link carries, both
            # ways, until the estimators have settled: they have not seen it yet (a loss
            # interval, a second of reports), or cut far below it (the send-side estimate fell
            # to 229 kbit/s on a 500 kbit/s link, and both videos were paused for 3 s)
            self.constrained = True
            estimate = CONGESTION_SHARE * self.congestion_kbps
        if self.gcc is not None and estimate is not None:
            # transport-cc: once the link has shown a limit, the send-side estimate follows it
            # both ways (delay, loss and probing) and is the budget, as in libwebrtc; it is
            # never "unconstrained" again (a capped publisher's rate would look like all it needs)
            return estimate if self.constrained else None
        if not self.constrained or estimate is None:
            return None
        if estimate >= 1.1 * demand_kbps and self.loss < 0.02 and not self.overusing:
            self.constrained = False
            return None
        return estimate

    # What admission may hold against a link: an estimate counts only with evidence of a limit
    # (loss, or delay overuse). A link that carried all we sent without loss is not limited by
    # what we happened to send: it stays "unknown" (unconstrained) until it shows its limit.
    # With transport-cc the queue shows before the loss does: a tbf or a router buffer holds
    # seconds of a small overload, and receiver reports say "no loss" all that time.
    def limited_down_kbps(self, now: float) -> float | None:
        gcc = self.gcc
        if self.loss > 0.02 or (gcc is not None and (self.overused or gcc.loss > 0.02)):
            return self.down_kbps(now)
        return None

    def limited_up_kbps(self, now: float) -> float | None:
        # loss, not delay alone: a busy event loop on either side makes delay look like overuse
        estimate = self.up_kbps(now)
        return estimate if self.uplink.loss_fraction(now) > 0.02 else None
