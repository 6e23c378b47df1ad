"""The server's observers of the control plane: metrics and the event listeners (webhooks, tests).

``ServerEvents`` implements ``sfu.calls.events.CallEvents``. Payloads carry opaque ids only.
Listeners are called synchronously with (event name, JSON payload); they must only queue work,
and one that raises is logged and skipped, never breaking the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sfu.calls.events import CallKey
from sfu.service.metrics import Metrics

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]


class ServerEvents:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.listeners: list[Listener] = []

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(name, payload)
            except Exception:  # noqa: BLE001 - a listener must never break signaling
                log.exception("event listener failed for %s", name)

    # -- sfu.calls.events.CallEvents ------------------------------------------------------------
    def participant_joined(self, key: CallKey, participant: str, role: str) -> None:
        self.metrics.join_outcome(role, "admitted")
        self.emit("participant.joined", {**key.ids(), "participant": participant, "role": role})

    def participant_left(self, key: CallKey, participant: str, reason: str) -> None:
        self.emit("participant.left", {**key.ids(), "participant": participant, "reason": reason})

    def join_refused(self, role: str, code: str, ids: dict[str, str]) -> None:
        self.metrics.join_outcome(role, code)
        if role == "unknown":
            # no valid token: anyone on the internet can open such sockets by the thousand; as
            # events they would push the clinic's real ones out of the bounded webhook queue.
            # Counted (sfu_joins_total{outcome="unauthorized"}), not told.
            return
        self.emit("join.refused", {"role": role, "code": code, **ids})

    def quality_changed(self, participant: str, level: str) -> None:
        self.metrics.quality_changes.labels(level).inc()
        self.emit("quality.changed", {"participant": participant, "level": level})

    def estimates(self, up_kbps: float | None, down_kbps: float | None,
                  rtt: float | None) -> None:
        if up_kbps is not None:
            self.metrics.bandwidth_estimate.labels("uplink").observe(up_kbps)
        if down_kbps is not None:
            self.metrics.bandwidth_estimate.labels("downlink").observe(down_kbps)
        if rtt is not None:
            self.metrics.rtt.observe(rtt)

    def first_media(self, seconds: float) -> None:
        self.metrics.first_media(seconds)

    def patient_waited(self, seconds: float) -> None:
        self.metrics.wait_seconds.observe(seconds)
