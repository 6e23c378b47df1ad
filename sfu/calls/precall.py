"""The pre-call test: a client measures its link to the server before it joins anything.

``{"type":"precall"}`` (any valid token) starts it: the server offers as for a join; what the
client publishes is measured on the way in (uplink: rate, loss, delay trend) and sent straight
back to it (downlink: its receiver reports give loss, jitter and RTT). After ``seconds`` the
client gets ``precall_result`` with a verdict by the clinic's thresholds (``ok``, ``warn``,
``blocked``), like the reference service's "test call". Nothing is joined, nobody else sees it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sfu.bandwidth import AdmissionSettings, precall_verdict
from sfu.calls.quality import Link
from sfu.transport.endpoint import Endpoint


class PrecallTest:
    def __init__(self, endpoint: Endpoint, settings: AdmissionSettings, seconds: float) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.seconds = seconds
        self.link = Link()
        self.link.attach(endpoint)

    def producers_changed(self) -> None:
        """Echo what the client publishes back to it: its downlink carries its own media."""
        for producer in list(self.endpoint.producers.values()):
            self.endpoint.subscribe(producer)

    async def run(self) -> dict[str, Any]:
        self.endpoint.start()
        self.endpoint.renegotiate()
        start = time.monotonic()
        last = start
        while time.monotonic() - start < self.seconds:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for producer in self.endpoint.producers.values():
                self.link.observe(producer)
            self.link.feed_downlink(self.endpoint, now, now - last)
            last = now
        now = time.monotonic()
        octets_in = sum(p.octets for p in self.endpoint.producers.values())
        measured_up = octets_in * 8 / 1000 / max(0.001, now - start - 0.5)
        up = self.link.up_kbps(now)
        up = measured_up if up is None else min(up, max(measured_up, up))
        down = self.link.down_kbps(now)
        octets_out = sum(self.endpoint.sent_octets().values())
        measured_down = octets_out * 8 / 1000 / max(0.001, now - start - 0.5)
        if self.link.loss <= 0.02:  # it carried everything it was sent: at least that much
            down = max(down or 0.0, measured_down)
        rtt = self.endpoint.rtt
        if not self.endpoint.got_media:
            return {"type": "precall_result", "verdict": "blocked",
                    "message": "no media reached the server: check the network or firewall",
                    "up_kbps": 0, "down_kbps": None, "rtt_ms": None, "loss": None}
        verdict, message = precall_verdict(up, down if down is not None else up, rtt, self.settings)
        return {"type": "precall_result", "verdict": verdict, "message": message,
                "up_kbps": round(up), "down_kbps": None if down is None else round(down),
                "rtt_ms": None if rtt is None else round(rtt * 1000), "loss": round(self.link.loss, 3)}
