"""A synthetic publisher behaves like a browser's sender: it stamps what it publishes with
transport-wide numbers, the server answers with transport feedback, and the publisher's send-side
estimate on that feedback picks its rendition. Its uplink narrows (a bottleneck in front of its
socket): it switches down; the bottleneck goes: it ramps up again."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sfu.client.client import Client
from sfu.client.media import ClipParams, Renditions, load_renditions
from tests.integration.helpers import close_all, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def renditions(tmp_path_factory: pytest.TempPathFactory) -> Renditions:
    params = ClipParams(width=160, height=120, seconds=2, keyframe_interval_s=0.5)
    directory = Path(os.environ.get("SFU_CLIP_DIR") or tmp_path_factory.mktemp("renditions"))
    return load_renditions(directory, params, (150, 300, 600, 1200))


class Bottleneck:
    """In front of the client's socket: while ``kbps`` is set, packets leave at that rate through
    a FIFO that drops what would wait over 0.4 s. The client notes the send time before it."""

    def __init__(self, wire: Any) -> None:
        self.wire = wire
        self.kbps: float | None = None
        self._free_at = 0.0
        self._timers: set[asyncio.TimerHandle] = set()

    def ready(self) -> bool:
        return bool(self.wire.ready())

    def send_rtp(self, data: bytes) -> None:
        if self.kbps is None:
            self.wire.send_rtp(data)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._free_at)
        if start - now > 0.4:
            return  # dropped at the tail
        self._free_at = start + len(data) * 8 / (self.kbps * 1000)
        handle: asyncio.TimerHandle

        def leave() -> None:
            self._timers.discard(handle)
            self.wire.send_rtp(data)

        handle = loop.call_at(self._free_at, leave)
        self._timers.add(handle)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


async def test_a_publisher_follows_its_estimate_down_a_narrow_uplink_and_back_up(
        server: Any, token: Callable[..., str], renditions: Renditions) -> None:
    publisher = Client(server.url, token(sub="pub"), renditions=renditions, start_kbps=600)
    bottleneck: Bottleneck | None = None
    try:
        await publisher.join({"room": "team"})
        await wait_for(lambda: publisher.feedback_received >= 10 and len(publisher.senders) == 2,
                       timeout=15)
        video = publisher.video_track
        assert video is not None and publisher.gcc is not None
        endpoint = next(iter(server.calls.by_key.values())).participants[
            publisher.participant].endpoint
        assert endpoint.twcc_in is not None and endpoint.feedback_sent >= 10
        assert video.rendition_kbps == 600  # its start: the link carries it

        bottleneck = Bottleneck(publisher.senders[0].wire)
        for sender in publisher.senders:
            sender.wire = bottleneck
        bottleneck.kbps = 250  # less than the 600 rendition and audio
        await wait_for(lambda: video.rendition_kbps <= 150, timeout=10)
        assert (publisher.gcc.estimate_kbps(0) or 0) < 400

        bottleneck.kbps = None  # the link is wide again
        await wait_for(lambda: video.rendition_kbps >= 600, timeout=30)
    finally:
        if bottleneck is not None:
            bottleneck.close()
        await close_all([publisher])
