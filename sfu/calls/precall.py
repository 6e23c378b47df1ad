"""The pre-call test: a client measures its link to the server before it joins anything.

``{"type":"precall"}`` (any valid token) starts it: the server offers as for a join; what the
client publishes is measured on the way in (uplink: rate, loss, delay trend) and sent straight
back to it. After ``seconds`` the client gets ``precall_result`` with a verdict by the clinic's
thresholds (``ok``, ``warn``, ``blocked``), like the reference service's "test call". Nothing is
joined, nobody else sees it.

What a browser sends in its first seconds is what its congestion controller dares, not what the
link carries, so the test probes (docs/bandwidth.md "Pre-call test"):

* uplink, first (1.5 s from the client's first media): the client is asked for filler over its
  socket (``precall_upload``: random bytes in base64, acknowledged with ``precall_uploaded`` so
  that little is ever in flight) and the rate at which it and the media arrive is the uplink's
  limit, or a lower bound when all of it arrived in time. A client that sends no filler is
  measured by its media and its own estimate (``precall_stats`` ``outgoing_kbps``: a browser's
  ``availableOutgoingBitrate``), graded only with evidence of a limit (loss on the way in).
* downlink, then (the flood would delay the upload's acknowledgements): once the echo's video
  m-line is up, padding on top of the echo ramps to ``PROBE_CEILING x good_kbps``
  (``sfu.bandwidth.capacity``) and transport-cc feedback says what arrived and when: the arrival
  rate is the downlink's capacity, or a lower bound when all of it arrived. The padding goes to
  this test's peer only, within that budget (the echo answers no NACKs), and stops when the
  probe's schedule ends, when the test ends, or when its peer or socket goes (the padding is
  asked for 200 ms at a time, and the endpoint's timers die with it).

A ``PrecallTest`` owns its endpoint (made by the factory it is given) and the task that runs the
test; ``close`` cancels and awaits the task and closes the endpoint (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sfu.bandwidth import BandwidthSettings, precall_verdict
from sfu.bandwidth.admission import graded_link, precall_video
from sfu.bandwidth.capacity import CapacityProbe, CapacitySettings
from sfu.calls.events import Client
from sfu.calls.link import Link
from sfu.calls.media import EndpointFactory
from sfu.transport.endpoint import EndpointListener, TrackInfo

log = logging.getLogger(__name__)

PROBE_CEILING = 1.3  # the downlink probe offers up to this x good_kbps (media and padding)
STEP_S = 0.1  # the probe's control interval
PADDING_LEASE_S = 0.2  # padding is asked for this long at a time: it stops soon after we do
OVERTIME_S = 3.0  # a probe still running at ``seconds`` may finish within this
UPLOAD_S = 1.5  # the uplink probe: the client is asked for filler over its socket this long ...
UPLOAD_GRACE_S = 0.3  # ... arriving within this much more
MAX_REPORTED_KBPS = 1_000_000.0


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
        # the echo is not watched: retransmissions would only add to the probe's budget
        self.endpoint.retransmit = False
        self.link = Link()
        self.link.attach(self.endpoint)
        self.probe = CapacityProbe(CapacitySettings(
            ceiling_kbps=PROBE_CEILING * max(settings.good_kbps, settings.warn_kbps)))
        self.endpoint.listen_transport_feedback(self.probe.on_feedback)
        self.media_at: float | None = None  # when the client's first packet arrived
        self.outgoing_kbps: float | None = None  # the client's own uplink estimate, if it says
        self.padding_kbps = 0.0  # the padding last asked for (kbit/s)
        self.min_rtt: float | None = None  # the link's own round trip, without our probe's queue
        # the uplink probe: asked at (our clock), filler bytes and media bytes received since
        self.upload_asked: float | None = None
        self.upload_kbps = self.probe.settings.ceiling_kbps
        self.upload_bytes = 0
        self.upload_arrivals: list[tuple[float, int]] = []
        self.upload_media_start = 0
        self.upload_media_bytes: int | None = None
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

    def on_upload(self, size: int) -> None:
        """``size`` bytes of filler arrived (``precall_upload``); counted only within the
        window it was asked for, and never after the result."""
        now = self.monotonic()
        asked = self.upload_asked
        if self.closed or asked is None or now > asked + UPLOAD_S + UPLOAD_GRACE_S:
            return
        self.upload_bytes += size
        self.upload_arrivals.append((now, size))
        self.client.precall_uploaded(self.upload_bytes)  # the client keeps little in flight

    def report_outgoing(self, kbps: object) -> None:
        """The client's own estimate of its uplink (a browser's ``availableOutgoingBitrate``),
        in kbit/s. Anything but a number from 0 to 1e6 is refused and changes nothing."""
        if isinstance(kbps, bool) or not isinstance(kbps, int | float) \
                or not 0 <= kbps <= MAX_REPORTED_KBPS or kbps != kbps:
            raise ValueError("'outgoing_kbps' must be a number from 0 to 1000000")
        self.outgoing_kbps = float(kbps)

    # -- what its endpoint tells -------------------------------------------------------------
    async def send_offer(self, endpoint: object, sdp: str, tracks: list[TrackInfo]) -> None:
        self.client.offer(sdp, tracks)

    def producers_changed(self, endpoint: object) -> None:
        """Echo what the client publishes back to it: its downlink carries its own media."""
        for producer in list(self.endpoint.producers.values()):
            self.endpoint.subscribe(producer)

    def failed(self, endpoint: object, reason: str) -> None:
        self.client.failed("media_failed", f"media connection lost: {reason}")

    def first_media(self, endpoint: object) -> None:
        self.media_at = self.monotonic()

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
        last_tick = start
        last_step = start
        sent_before = 0
        media_kbps = 0.0
        while True:
            await asyncio.sleep(STEP_S)
            now = self.monotonic()
            sent = sum(self.endpoint.sent_octets().values())
            if now > last_step:
                rate = (sent - sent_before) * 8 / 1000 / (now - last_step)
                media_kbps = 0.7 * media_kbps + 0.3 * rate
            sent_before, last_step = sent, now
            rtt = self.endpoint.rtt
            if rtt is not None and (self.min_rtt is None or rtt < self.min_rtt):
                self.min_rtt = rtt
            self._step_probe(now, media_kbps)
            if now - last_tick >= 1.0:
                self.link.replay()
                self.link.feed_downlink(now, now - last_tick)
                last_tick = now
            elapsed = now - start
            if elapsed >= self.seconds and (
                    self.probe.started is None or self.probe.done(now)
                    or elapsed >= self.seconds + OVERTIME_S):
                break
        self._stop_padding()
        now = self.monotonic()
        return self.verdict(now, now - start)

    def _media_in(self) -> int:
        return sum(p.octets for p in self.endpoint.producers.values())

    def _step_upload(self, now: float) -> bool:
        """Ask for the uplink probe at the client's first media; True once its window is over
        (the downlink probe waits for it: its flood would delay the upload's TCP ACKs)."""
        if self.upload_asked is None:
            if not self.endpoint.got_media:
                return False
            self.upload_asked = now
            self.upload_media_start = self._media_in()
            self.client.precall_upload(self.upload_kbps, UPLOAD_S)
            return False
        if now < self.upload_asked + UPLOAD_S + UPLOAD_GRACE_S:
            return False
        if self.upload_media_bytes is None:
            self.upload_media_bytes = self._media_in() - self.upload_media_start
        return True

    def _step_probe(self, now: float, media_kbps: float) -> None:
        """Start the downlink probe once padding can reach the client and the uplink probe is
        over; pace its padding."""
        if self.probe.started is None:
            if not (self._step_upload(now) and self.endpoint.padding_ready):
                return
            self.probe.start(now)
            log.info("pre-call %s: probing the downlink up to %.0f kbit/s", self.id,
                     self.probe.settings.ceiling_kbps)
        target = self.probe.target_kbps(now)
        if target is None:
            self._stop_padding()
            return
        self.padding_kbps = max(0.0, target - media_kbps)
        self.endpoint.send_padding(self.padding_kbps, PADDING_LEASE_S)

    def _stop_padding(self) -> None:
        if self.padding_kbps > 0:
            self.padding_kbps = 0.0
            self.endpoint.send_padding(0.0, 0.0)

    def upload_measure(self) -> tuple[float, bool] | None:
        """What the uplink probe measured: (filler and media that arrived in its window, kbit/s;
        whether all the filler asked for arrived), or None (not asked, or the client sent no
        filler: it does not take part)."""
        if self.upload_asked is None or not self.upload_arrivals or self.upload_media_bytes is None:
            return None
        wanted = self.upload_kbps * 1000 / 8 * UPLOAD_S
        complete = self.upload_bytes >= 0.95 * wanted
        window = UPLOAD_S + UPLOAD_GRACE_S
        media_kbps = self.upload_media_bytes * 8 / 1000 / window
        if complete:  # at least what was asked for (a fast link delivers it in a burst)
            return self.upload_kbps + media_kbps, True
        # not all arrived: the rate at which it did, once it flowed (TCP's first round trips
        # and the request's way to the client left out); too little to tell: no measure
        arrivals = self.upload_arrivals
        span = arrivals[-1][0] - arrivals[0][0]
        if len(arrivals) < 5 or span < 0.3:
            return None
        filler = sum(size for _, size in arrivals[1:]) * 8 / 1000 / span
        return filler + media_kbps, False

    def verdict(self, now: float, elapsed: float) -> dict[str, Any]:
        link, endpoint = self.link, self.endpoint
        if not endpoint.got_media:
            return {"type": "precall_result", "verdict": "blocked",
                    "message": "no media reached the server: check the network or firewall",
                    "up_kbps": 0, "down_kbps": None, "rtt_ms": None, "loss": None,
                    "up_at_least": False, "down_at_least": False, "video": "none"}
        # uplink: what arrived since the first packet; graded only when it lost packets
        octets_in = sum(p.octets for p in endpoint.producers.values())
        media_s = max(0.5, now - (self.media_at if self.media_at is not None
                                  else now - elapsed))
        measured_up = octets_in * 8 / 1000 / media_s
        up_loss = link.uplink.loss_fraction(now)
        up_at_least = up_loss <= 0.02
        # loss: the client sent more than arrived, and what arrived is what the link carried
        up = max(measured_up, self.outgoing_kbps or 0.0) if up_at_least else measured_up
        upload = self.upload_measure()
        if upload is not None:
            kbps, complete = upload
            if complete and up_at_least:
                up = max(up, kbps)  # it carried all the filler asked for: at least that
            else:  # the filler did not all arrive in time, or the media lost packets meanwhile
                up, up_at_least = kbps, False
        # downlink: the probe's arrival rate, else what the echo carried
        capacity = self.probe.capacity()
        if capacity is not None:
            down: float | None = capacity.kbps
            down_at_least = not capacity.limited
        else:
            down = link.down_kbps(now)
            measured_down = sum(endpoint.sent_octets().values()) * 8 / 1000 / media_s
            down_at_least = link.loss <= 0.02  # it carried everything it was sent
            if down_at_least:
                down = max(down or 0.0, measured_down)
        # the lowest seen: the probe's padding queues behind a bottleneck, that is not the link's
        rtt = self.min_rtt if self.min_rtt is not None else endpoint.rtt
        graded_down = down if down is not None else up
        verdict, message = precall_verdict(up, graded_down, rtt, self.settings,
                                           up_at_least=up_at_least,
                                           down_at_least=down_at_least)
        log.info("pre-call %s: %s (up %.0f%s, down %s%s, probe %s)", self.id, verdict, up,
                 "+" if up_at_least else "", "-" if down is None else f"{down:.0f}",
                 "+" if down_at_least else "", capacity)
        return {"type": "precall_result", "verdict": verdict, "message": message,
                "up_kbps": round(up), "down_kbps": None if down is None else round(down),
                "rtt_ms": None if rtt is None else round(rtt * 1000), "loss": round(up_loss, 3),
                "up_at_least": up_at_least, "down_at_least": down_at_least,
                "video": precall_video(graded_link(up, graded_down, up_at_least=up_at_least,
                                                   down_at_least=down_at_least), self.settings)}
