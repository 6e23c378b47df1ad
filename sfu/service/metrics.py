"""Prometheus metrics. The packet path bumps plain integers (``Counters``); they are read on scrape.

No label carries a clinic, room or participant id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sfu.transport.counters import Counters

JOIN_OUTCOMES = ("admitted", "room_full", "insufficient_bandwidth", "forbidden", "unauthorized",
                 "bad_request", "draining", "not_found")
ROLES = ("patient", "guest", "staff", "admin", "unknown")


class Metrics:
    def __init__(self, counters: Counters, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counters = counters
        self._snapshot = snapshot
        self.joins = Counter("sfu_joins", "Join attempts by role and outcome", ["role", "outcome"],
                             registry=self.registry)
        for role in ROLES:
            for outcome in JOIN_OUTCOMES:
                self.joins.labels(role, outcome)
        self.wait_seconds = Histogram(
            "sfu_wait_seconds", "Patient wait: waiting-area entry to first staff join",
            buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600), registry=self.registry)
        self.join_seconds = Histogram(
            "sfu_join_seconds", "Join to first media received from the participant",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10), registry=self.registry)
        self.quality_changes = Counter("sfu_quality_changes", "Quality level changes", ["level"],
                                       registry=self.registry)
        self.bandwidth_estimate = Histogram(
            "sfu_bandwidth_estimate_kbps", "Bandwidth estimates", ["direction"],
            buckets=(100, 180, 330, 500, 1000, 2000, 5000), registry=self.registry)
        self.rtt = Histogram("sfu_rtt_seconds", "Round-trip times from RTCP",
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
                             registry=self.registry)
        self.loop_lag = Histogram("sfu_event_loop_lag_seconds", "Event loop lag",
                                  buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
                                  registry=self.registry)
        ProcessCollector(registry=self.registry)
        self.registry.register(_ScrapeCollector(self))

    def join_outcome(self, role: str, outcome: str) -> None:
        self.joins.labels(role if role in ROLES else "unknown",
                          outcome if outcome in JOIN_OUTCOMES else "bad_request").inc()

    def first_media(self, seconds: float) -> None:
        self.join_seconds.observe(max(0.0, seconds))

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


class _ScrapeCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        c = self.m.counters
        snap = self.m._snapshot()
        g = GaugeMetricFamily("sfu_participants", "Connected participants", labels=["role"])
        for role in ROLES[:4]:
            g.add_metric([role], snap.get("participants", {}).get(role, 0))
        yield g
        g = GaugeMetricFamily("sfu_rooms", "Spaces and meeting rooms with people in them",
                              labels=["kind"])
        for kind in ("space", "room"):
            g.add_metric([kind], snap.get("rooms", {}).get(kind, 0))
        yield g
        yield GaugeMetricFamily("sfu_waiting_patients", "Patients waiting for staff",
                                value=snap.get("waiting_patients", 0))
        yield GaugeMetricFamily("sfu_media_endpoints",
                                "Media endpoints open (a call's or a pre-call test's)",
                                value=snap.get("endpoints", 0))
        yield GaugeMetricFamily("sfu_signaling_sockets", "WebSocket signaling sockets open",
                                value=snap.get("sockets", 0))
        yield GaugeMetricFamily("sfu_asyncio_tasks", "Tasks of the server's event loop",
                                value=snap.get("tasks", 0))
        g = GaugeMetricFamily(
            "sfu_video_layer_receivers",
            "Videos being forwarded, by what each receiver gets: a simulcast layer's RID (q, h, "
            "f), a publisher's only encoding (single), none yet (starting) or none (paused)",
            labels=["layer"])
        layers = snap.get("video_layers", {})
        for layer in ("q", "h", "f", "single", "starting", "paused"):
            g.add_metric([layer], layers.get(layer, 0))
        yield g
        cluster = snap.get("cluster", {})
        yield GaugeMetricFamily("sfu_cluster_nodes",
                                "Live nodes of this server's cluster as it last saw them (0: no "
                                "[cluster])", value=cluster.get("nodes", 0))
        yield CounterMetricFamily("sfu_cluster_redirects",
                                  "Joins sent to the node hosting their call", value=cluster.get("redirects", 0))
        yield CounterMetricFamily("sfu_cluster_relayed_requests",
                                  "HTTP requests relayed to the node hosting their space",
                                  value=cluster.get("relayed", 0))
        yield CounterMetricFamily("sfu_cluster_redis_errors",
                                  "Redis commands of the cluster that failed (retried or refused)",
                                  value=cluster.get("redis_errors", 0))
        f = CounterMetricFamily("sfu_rtp_packets_forwarded", "RTP packets forwarded", labels=["kind"])
        b = CounterMetricFamily("sfu_rtp_bytes_forwarded", "RTP bytes forwarded", labels=["kind"])
        r = CounterMetricFamily("sfu_rtp_packets_received", "RTP packets received", labels=["kind"])
        forwarded = c.forwarded()
        for kind in ("audio", "video"):
            f.add_metric([kind], forwarded[kind][0])
            b.add_metric([kind], forwarded[kind][1])
            r.add_metric([kind], c.received_packets[kind])
        yield f
        yield b
        yield r
        d = CounterMetricFamily("sfu_rtp_packets_dropped", "Packets dropped", labels=["reason"])
        for reason, n in sorted(c.dropped.items()):
            d.add_metric([reason], n)
        yield d
        yield CounterMetricFamily("sfu_nack", "NACKs received from subscribers", value=c.nacks)
        yield CounterMetricFamily("sfu_nack_upstream", "NACKs sent to publishers for lost packets",
                                  value=c.nacks_sent)
        yield CounterMetricFamily("sfu_rtp_retransmitted", "Packets resent for NACKs",
                                  value=c.retransmitted)
        yield CounterMetricFamily(
            "sfu_rtp_retransmits_suppressed",
            "NACKed packets not resent (resent within min(100 ms, 2 RTT) or 3 times already)",
            value=c.retransmits_suppressed)
        yield CounterMetricFamily("sfu_pli", "Keyframe requests sent to publishers", value=c.plis)
        yield CounterMetricFamily("sfu_simulcast_layer_switches",
                                  "Times a receiver was moved from one simulcast layer to another",
                                  value=c.layer_switches)
