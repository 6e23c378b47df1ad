"""A simulcast synthetic publisher in a call (issue 12): it answers the server's simulcast offer with
its three layers, and every receiver gets its video."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sfu.client.client import Client
from sfu.client.media import Clip, ClipParams, Renditions, load_layers
from tests.integration.helpers import close_all, wait_for


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Renditions:
    directory = Path(os.environ.get("SFU_CLIP_DIR") or tmp_path_factory.mktemp("layers"))
    return load_layers(directory, ClipParams(seconds=5))  # 180p, 360p, 720p: ~3 s to encode


async def test_a_simulcast_publisher_reaches_two_receivers(server, token, clip: Clip,
                                                           layers: Renditions) -> None:
    publisher = Client(server.url, token(sub="pub"), clip=clip, simulcast=layers)
    receivers = [Client(server.url, token(sub=f"r{i}"), clip=clip, publish_video=False)
                 for i in range(2)]
    clients = [publisher, *receivers]
    try:
        for c in clients:
            await c.join({"room": "team"})
        await wait_for(lambda: publisher.last_answer is not None, timeout=10)
        assert publisher.simulcast_rids == ("q", "h", "f")
        offer = next(m for m in reversed(publisher.messages) if m.get("type") == "offer")
        assert "a=simulcast:recv q;h;f" in offer["sdp"]
        assert publisher.last_answer is not None
        assert "a=simulcast:send q;h;f" in publisher.last_answer

        def video_everywhere() -> bool:
            for r in receivers:
                video = r.received_from(publisher.participant or "", "video")
                if video is None or video.keyframes < 1 or video.frames < 30:
                    return False
            return True

        await wait_for(video_everywhere, timeout=15)
        # every layer went out on its own SSRC with its rid, and the server says which it wants
        layer_senders = [s for s in publisher.senders if s.rid]
        assert [s.rid for s in layer_senders] == ["q", "h", "f"]
        assert len({s.ssrc for s in layer_senders}) == 3
        assert all(s.packets > 0 for s in layer_senders)
        await wait_for(lambda: publisher.publish_layers is not None, timeout=5)
        assert publisher.publish_layers is not None and publisher.publish_layers["q"] is True
        for r in receivers:
            await wait_for(lambda r=r: (r.video_layers or {}).get(  # type: ignore[misc]
                publisher.participant) is not None, 10)
            layer = (r.video_layers or {})[publisher.participant]
            # the server read the size from the layer's keyframes: the rid's own rendition
            rid = layer["rid"]
            assert rid in ("q", "h", "f")
            assert (layer["width"], layer["height"]) == layers.sizes["qhf".index(rid)]
        # the server wants the lowest layer and those someone receives (contract), and a layer
        # it turns off stops while the others go on
        def wanted() -> dict[str, bool]:
            got = {(r.video_layers or {}).get(publisher.participant, {}).get("rid")
                   for r in receivers}
            return {rid: rid == "q" or rid in got for rid in "qhf"}

        await wait_for(lambda: publisher.publish_layers == wanted(), timeout=10)
        # the metrics count what each receiver gets, by layer, without naming anyone
        metrics = server.metrics.render().decode()
        got = [(r.video_layers or {})[publisher.participant]["rid"] for r in receivers]
        for rid in "qhf":
            line = f'sfu_video_layer_receivers{{layer="{rid}"}} {float(got.count(rid))}'
            assert line in metrics, (line, [m for m in metrics.splitlines() if "layer" in m])
        assert publisher.participant not in metrics
        off = [s for s in layer_senders if not wanted()[s.rid or ""]]
        before = {s.rid: s.packets for s in layer_senders}
        q = layer_senders[0]
        await wait_for(lambda: q.packets > before["q"] + 60, timeout=10)
        assert all(s.packets == before[s.rid] for s in off)
    finally:
        await close_all(clients)
