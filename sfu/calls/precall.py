"""The pre-call test: a client measures its link to the server before it joins anything.

``{"type":"precall"}`` (any valid token) starts it: the server offers as for a join; what the
client publishes is measured on the way in (uplink: rate, loss, delay trend) and sent straight
back to it (downlink: its receiver reports give loss, jitter and RTT). After ``seconds`` the
client gets ``precall_result`` with a verdict by the clinic's thresholds (``ok``, ``warn``,
``blocked``), like the reference service's "test call". Nothing is joined, nobody else sees it.

A ``PrecallTest`` owns its endpoint (made by the factory it is given) and the task that runs the
test; ``close`` cancels and awaits the task and closes the endpoint (idempotent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sfu.bandwidth import BandwidthSettings, precall_verdict
from sfu.calls.events import Client
from sfu.calls.link import Link
from sfu.calls.media import EndpointFactory
from sfu.transport.endpoint import EndpointListener, TrackInfo


class PrecallTest(EndpointListener):
    def __init__(self, test_id: str, *, client: Client, new_endpoint: EndpointFactory,
                 settings: BandwidthSettings, seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.id = test_id
        self.client = client
        self.settings = settings
        self.seconds = seconds
        self.monotonic = monotonic
        self.endpoint = new_endpoint(test_id, self)
        self.link = Link()
        self.link.attach(self.endpoint)
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name(f"precall-{self.id}")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.endpoint.close()

    async def wait(self) -> None:
        """Until the result has been sent (or the test was closed)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # -- commands from its client -------------------------------------------------------------
    async def answer(self, sdp: str) -> None:
        await self.endpoint.apply_answer(sdp)

    async def add_candidate(self, candidate: str, sdp_mid: str | None) -> None:
        await self.endpoint.add_candidate(candidate, sdp_mid)

    # -- what its endpoint tells -------------------------------------------------------------
    async def send_offer(self, endpoint: object, sdp: str, tracks: list[TrackInfo]) -> None:
        self.client.offer(sdp, tracks)

    def producers_changed(self, endpoint: object) -> None:
        """Echo what the client publishes back to it: its downlink carries its own media."""
        for producer in list(self.endpoint.producers.values()):
            self.endpoint.subscribe(producer)

    def failed(self, endpoint: object, reason: str) -> None:
        self.client.failed("media_failed", f"media connection lost: {reason}")

    # -- the test ----------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            self.client.precall_result(await self.measure())
        finally:
            self.closed = True
            await self.endpoint.close()

    async def measure(self) -> dict[str, Any]:
        self.endpoint.start()
        self.endpoint.renegotiate()
        start = self.monotonic()
        last = start
        while self.monotonic() - start < self.seconds:
            await asyncio.sleep(1.0)
            now = self.monotonic()
            self.link.replay()
            self.link.feed_downlink(now, now - last)
            last = now
        now = self.monotonic()
        return self.verdict(now, now - start)

    def verdict(self, now: float, elapsed: float) -> dict[str, Any]:
        link, endpoint = self.link, self.endpoint
        if not endpoint.got_media:
            return {"type": "precall_result", "verdict": "blocked",
                    "message": "no media reached the server: check the network or firewall",
                    "up_kbps": 0, "down_kbps": None, "rtt_ms": None, "loss": None}
        octets_in = sum(p.octets for p in endpoint.producers.values())
        measured_up = octets_in * 8 / 1000 / max(0.001, elapsed - 0.5)
        up = link.up_kbps(now)
        up = measured_up if up is None else min(up, max(measured_up, up))
        down = link.down_kbps(now)
        measured_down = sum(endpoint.sent_octets().values()) * 8 / 1000 / max(0.001, elapsed - 0.5)
        if link.loss <= 0.02:  # it carried everything it was sent: at least that much
            down = max(down or 0.0, measured_down)
        rtt = endpoint.rtt
        verdict, message = precall_verdict(up, down if down is not None else up, rtt, self.settings)
        return {"type": "precall_result", "verdict": verdict, "message": message,
                "up_kbps": round(up), "down_kbps": None if down is None else round(down),
                "rtt_ms": None if rtt is None else round(rtt * 1000), "loss": round(link.loss, 3)}
