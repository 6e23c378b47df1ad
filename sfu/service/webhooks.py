"""Webhooks: server events delivered to the clinic portal, signed, in the background.

``WebhookDispatcher`` is an event listener of the server (``Server.event_listeners``): calling it
with ``(name, payload)`` builds the event once and puts it on one bounded queue per configured
URL. It never blocks and never awaits; a full queue drops the event for that URL and counts it.
One worker task per URL delivers its queue in order, retrying network errors, 5xx and 429 with
exponential backoff up to ``max_attempts``; other 4xx answers are final. A slow or dead receiver
therefore holds back only its own queue, never signaling, media or the other receivers.

Each request carries::

    Content-Type: application/json
    X-SFU-Event-Id: <id>           (the same on every retry: receivers de-duplicate on it)
    X-SFU-Timestamp: <unix seconds, at signing time>
    X-SFU-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

and the body ``{"id", "type", "time", "data"}``. Receivers check it with ``verify_signature``.
Payloads carry opaque ids only: a ``name`` key is removed before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.service.settings import WebhooksSettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SFU-Signature"
TIMESTAMP_HEADER = "X-SFU-Timestamp"
EVENT_ID_HEADER = "X-SFU-Event-Id"
_FORBIDDEN_KEYS = frozenset({"name", "display_name", "patient_name"})


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-SFU-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str | int | None, body: bytes | str,
                     header: str | None, *, now: float, tolerance: float = 300) -> bool:
    """True if ``header`` (``X-SFU-Signature``) signs ``body`` at ``timestamp`` (``X-SFU-Timestamp``)
    with ``secret`` and the timestamp lies within ``tolerance`` seconds of ``now``.

    Pass the raw request body, exactly as received (before any JSON parsing). Rejecting old
    timestamps stops replays; de-duplicate retries on the event ``id``.
    """
    if not header or timestamp is None or not header.startswith("sha256="):
        return False
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, str(timestamp), raw), header)


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    body: bytes  # the JSON body, encoded once


def _scrub(value: Any) -> Any:
    """Drop name-like keys at any depth: webhooks carry opaque ids, never names."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _FORBIDDEN_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _where(url: str) -> str:
    """A URL without its path and query (they may hold a receiver's token): for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


class _Target:
    """One receiver URL: its queue and its worker."""

    def __init__(self, url: str, queue_size: int) -> None:
        self.url = url
        self.queue: asyncio.Queue[WebhookEvent] = asyncio.Queue(max(1, queue_size))
        self.task: asyncio.Task[None] | None = None


class WebhookDispatcher:
    def __init__(self, config: WebhooksSettings, *, clock: Callable[[], float] = time.time,
                 registry: CollectorRegistry | None = None, backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        self.config = config
        self.clock = clock
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.dropped = 0  # events not queued for a URL because its queue was full
        self.delivered = 0  # (event, URL) pairs answered 2xx
        self.failed = 0  # (event, URL) pairs given up: 4xx, or attempts exhausted
        self._targets = [_Target(url, config.queue_size) for url in config.urls]
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._closed = False
        if registry is not None:
            registry.register(_WebhookCollector(self))

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    @property
    def queued(self) -> int:
        return sum(t.queue.qsize() for t in self._targets)

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        """Queue one event for every receiver. Synchronous; never blocks."""
        if self._closed or not self._targets:
            return
        event_id = "evt_" + secrets.token_hex(12)
        when = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        body = json.dumps({"id": event_id, "type": name, "time": when.replace("+00:00", "Z"),
                           "data": _scrub(payload)}, separators=(",", ":")).encode()
        event = WebhookEvent(event_id, name, body)
        for target in self._targets:
            try:
                target.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("webhook queue full for %s: dropped %s %s", _where(target.url), name,
                            event_id)

    async def start(self) -> None:
        if self._started or self._closed or not self._targets:
            return
        self._started = True
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            headers={"User-Agent": "sfu-webhooks/1"})
        for target in self._targets:
            target.task = asyncio.ensure_future(self._worker(target))

    async def close(self, flush_timeout: float = 1.0) -> None:
        """Give queued events up to ``flush_timeout`` seconds, then cancel and await the workers."""
        if self._closed:
            return
        self._closed = True
        tasks = [t.task for t in self._targets if t.task is not None]
        if tasks and flush_timeout > 0:
            flush = asyncio.gather(*(t.queue.join() for t in self._targets))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flush, flush_timeout)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- delivery ---------------------------------------------------------------------------------
    async def _worker(self, target: _Target) -> None:
        while True:
            event = await target.queue.get()
            try:
                if await self._deliver(target.url, event):
                    self.delivered += 1
                else:
                    self.failed += 1
            finally:
                target.queue.task_done()

    async def _deliver(self, url: str, event: WebhookEvent) -> bool:
        """Try up to ``max_attempts`` times; True once a receiver answered 2xx."""
        attempts = max(1, self.config.max_attempts)
        for attempt in range(1, attempts + 1):
            retry, outcome = await self._attempt(url, event)
            if not retry:
                if not outcome.startswith("2"):
                    log.warning("webhook %s %s to %s refused: %s", event.type, event.id,
                                _where(url), outcome)
                return outcome.startswith("2")
            if attempt < attempts:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                log.info("webhook %s %s to %s: %s; retry %d in %.1fs", event.type, event.id,
                         _where(url), outcome, attempt, delay)
                await asyncio.sleep(delay)
            else:
                log.warning("webhook %s %s to %s failed after %d attempts: %s", event.type,
                            event.id, _where(url), attempts, outcome)
        return False

    async def _attempt(self, url: str, event: WebhookEvent) -> tuple[bool, str]:
        """One POST: (retry?, outcome) with outcome the status code or the error."""
        assert self._session is not None
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event.id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.config.secret, timestamp, event.body),
        }
        try:
            async with self._session.post(url, data=event.body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return True, type(exc).__name__
        return status >= 500 or status == 429, str(status)


class _WebhookCollector(Collector):
    """Publishes the dispatcher's plain integers on scrape."""

    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self.d = dispatcher

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        d = self.d
        yield CounterMetricFamily("sfu_webhooks_delivered", "Webhook deliveries answered 2xx",
                                  value=d.delivered)
        yield CounterMetricFamily("sfu_webhooks_failed",
                                  "Webhook deliveries given up (4xx or attempts exhausted)",
                                  value=d.failed)
        yield CounterMetricFamily("sfu_webhooks_dropped", "Webhook events dropped: queue full",
                                  value=d.dropped)
        yield GaugeMetricFamily("sfu_webhooks_queued", "Webhook events waiting for delivery",
                                value=d.queued)
