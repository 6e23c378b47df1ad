"""A headless Chromium page of the project's web client, optionally inside a network namespace.

Shared by bench/browser_link.py and bench/bandwidth.py. The server binds the lab's server
address (bench/netns.py), so the pages are served from ``http://10.77.B.1:port``, not localhost:
:func:`launch` lets camera and microphone work there as on a secure origin. A browser launched
with ``ns`` runs Debian's chromium under ``ip netns exec``: everything it sends and receives,
signaling included, crosses that namespace's shaped veth. Flags come from bench/browser_call.py.

:data:`PAGE_STATS_JS` reads, from the page's ``window.sfuCall``, cumulative receive counters
(getStats ``inbound-rtp``) and the quality level the page was told; :func:`inbound_rates` turns
two such samples into per-second rates (pure, tested).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from bench.browser_call import CHROMIUM_ARGS

CHROMIUM = "/usr/bin/chromium"

# Cumulative counters of one page: per inbound RTP stream ("kind:ssrc"), bytes received (RTP
# headers included, to compare with what the server counts as sent), packets received, packets
# lost (sequence gaps, as the browser counts them) and frames decoded; totals of video frames
# decoded, video bytes and audio packets; its quality level and participant id (a page that
# reconnects joins again under a new one); ``at``: when the counters were read (ms since the
# epoch, getStats' own timestamp: a busy page may answer a while later).
PAGE_STATS_JS = """async () => {
  const call = window.sfuCall;
  if (!call || !call.pc) return null;
  const out = {decoded: 0, videoBytes: 0, audioIn: 0, encoded: 0, state: call.pc.connectionState,
               level: call.quality ? call.quality.level : "good", self: call.selfId || null,
               inbound: {}, at: null};
  (await call.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp") out.at = Math.max(out.at || 0, r.timestamp);
    if (r.type === "inbound-rtp") out.inbound[`${r.kind}:${r.ssrc}`] = [
      (r.bytesReceived || 0) + (r.headerBytesReceived || 0), r.packetsReceived || 0,
      r.packetsLost || 0, r.framesDecoded || 0];
    if (r.type === "inbound-rtp" && r.kind === "video") {
      out.decoded += r.framesDecoded || 0; out.videoBytes += r.bytesReceived || 0; }
    if (r.type === "inbound-rtp" && r.kind === "audio") out.audioIn += r.packetsReceived || 0;
    if (r.type === "outbound-rtp" && r.kind === "video") out.encoded += r.framesEncoded || 0;
  });
  return out;
}"""


async def lab_server(address: str, secret: str) -> tuple[Any, str]:
    """A server on the lab's server address (the embedded demo clinic and its "team" room, ICE
    on that address), started: (the server, its base URL). The caller closes it."""
    from sfu.service.config import config_from_dict
    from sfu.service.server import Server

    config = config_from_dict({
        "auth": {"secret": secret},
        "media": {"ice_addresses": [address]},
        "clinics": [{"id": "demo", "name": "Demo", "rooms": [{"id": "team", "name": "Team"}]}],
    }, environ={})
    server = Server(config)
    await server.start(address, 0)
    return server, f"http://{address}:{server.port}"


def chromium_in(ns: str, directory: Path) -> str:
    """An executable that runs Debian's chromium inside network namespace ``ns``."""
    path = directory / f"chromium-{ns}"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {CHROMIUM} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def launch_args(url: str) -> list[str]:
    """Chromium flags for pages served from ``url`` (a lab address, not localhost)."""
    return [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={url}"]


async def launch(playwright: Any, url: str, *, ns: str | None = None,
                 tmp: Path | None = None) -> Any:
    """A headless Chromium for pages of ``url``; inside namespace ``ns`` when given (its
    wrapper script goes to ``tmp``)."""
    executable = CHROMIUM
    if ns is not None:
        if tmp is None:
            raise ValueError("a namespaced chromium needs a directory for its wrapper")
        executable = chromium_in(ns, tmp)
    return await playwright.chromium.launch(executable_path=executable, headless=True,
                                            args=launch_args(url))


def room_url(url: str, room: str, token: str, clinic: str = "demo") -> str:
    return f"{url}/c/{clinic}/rooms/{room}#token={token}"


async def open_room(browser: Any, url: str, room: str, token: str, *, wait: bool = True,
                    timeout_ms: float = 60_000) -> tuple[Any, str | None]:
    """A new page of ``browser`` in meeting room ``room``: (page, its participant id once it
    joined, or None when ``wait`` is false)."""
    page = await (await browser.new_context()).new_page()
    await page.goto(room_url(url, room, token))
    if not wait:
        return page, None
    await page.wait_for_function("() => window.sfuCall && window.sfuCall.selfId",
                                 timeout=timeout_ms)
    return page, await page.evaluate("() => window.sfuCall.selfId")


def inbound_rates(prev: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    """Per-second rates between two samples of :data:`PAGE_STATS_JS` (each with its time
    ``t`` in seconds added): received kbit/s, drop (lost / expected), frames decoded per
    second, and how many video streams decoded at least one frame. Counted per stream: a
    stream that went away (a reconnection) drops out, a new one counts from zero."""
    dt = cur["t"] - prev["t"]
    octets = received = lost = frames = flowing = 0
    before = prev.get("inbound") or {}
    for key, (b, packets, lo, fd) in (cur.get("inbound") or {}).items():
        b0, packets0, lo0, fd0 = before.get(key, (0, 0, 0, 0))
        octets += max(0, b - b0)
        received += max(0, packets - packets0)
        lost += max(0, lo - lo0)
        frames += max(0, fd - fd0)
        if key.startswith("video:") and fd > fd0:
            flowing += 1
    expected = received + lost
    return {"t": cur["t"], "dt": dt, "kbps": octets * 8 / 1000 / dt if dt > 0 else 0.0,
            "expected": expected, "lost": lost, "drop": lost / expected if expected > 0 else 0.0,
            "fps": frames / dt if dt > 0 else 0.0, "videos": flowing}
