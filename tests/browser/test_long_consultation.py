"""A consultation lasts minutes: two Chromium pages (patient and dashboard) on loopback for 60 s.

In the last 20 s each page decodes the other's video at 90 % or more of the frame rate the other
encodes; no degraded-quality banner is ever shown, nor any quality level but good told; audio flows
throughout (every 5 s window).
This is the call that dropped to audio only within seconds when receiver reports that Chromium
sends only every ~5 s on audio were taken for loss.

At :data:`GARBAGE_AT` s, garbage datagrams reach both participants' media ports on the server:
from a stranger's socket, and as if from the browser's own address (handed to the port's protocol
as a datagram from it): empty, short, random, STUN-, DTLS- and RTP-looking ones, an RTP header
with a RID extension for a layer that does not exist. They are dropped and counted, and the call
goes on as if nothing came (the figures above cover the rest of the minute).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.test_patient_consultation import rtp_stats, start_consultation

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CALL_SECONDS = 60.0
LAST_WINDOW = 20.0
GARBAGE_AT = 20.0


def garbage() -> list[bytes]:
    rid_ext = b"\xbe\xde\x00\x01" + bytes([0xA1]) + b"zz" + b"\x00"  # id 10, rid "zz"
    return [b"", b"\x00", b"\x80", b"\x16\xfe\xfd" + os.urandom(20), os.urandom(200),
            struct.pack("!HHI", 1, 0, 0x2112A442) + os.urandom(12),  # a STUN binding request
            struct.pack("!BBHII", 0x90, 96, 1, 2, 0x1234) + rid_ext + os.urandom(100),
            struct.pack("!BBHII", 0x80, 200, 7, 0, 0) + os.urandom(40),  # an RTCP-looking SR
            b"\x80\x60" + os.urandom(9)]  # an RTP header cut short


def throw_garbage(server: Any) -> int:
    """Every datagram of :func:`garbage` at each participant's media port, from a stranger and
    as if from the participant; returns how many were sent."""
    sent = 0
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for call in server.calls.by_key.values():
            for participant in call.members():
                pair = participant.endpoint.peer.dtls.transport._connection._nominated[1]
                port = pair.protocol.transport.get_extra_info("sockname")
                for data in garbage():
                    stranger.sendto(data, port[:2])
                    pair.protocol.datagram_received(data, pair.remote_addr)
                    sent += 2
    finally:
        stranger.close()
    return sent

SAMPLE_JS = """async () => {
  const call = window.sfuCall;
  if (!call || !call.pc) return null;
  const out = {decoded: 0, encoded: 0, audioIn: 0, audioOut: 0,
               banner: (document.querySelector("#banner") || {}).textContent || "",
               level: call.quality ? call.quality.level : null};
  (await call.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") out.decoded += r.framesDecoded || 0;
    if (r.type === "inbound-rtp" && r.kind === "audio") out.audioIn += r.packetsReceived || 0;
    // with simulcast each layer encodes every frame: the frames are those of the busiest layer
    if (r.type === "outbound-rtp" && r.kind === "video") out.encoded = Math.max(out.encoded, r.framesEncoded || 0);
    if (r.type === "outbound-rtp" && r.kind === "audio") out.audioOut += r.packetsSent || 0;
  });
  return out;
}"""


def at(samples: list[tuple[float, dict[str, Any]]], t: float) -> dict[str, Any]:
    """The last sample taken at or before ``t`` seconds into the call."""
    return [s for when, s in samples if when <= t][-1]


async def test_two_browsers_stay_a_video_consultation_for_a_minute(
    server: Any, browser: Any, token: Callable[..., str]
) -> None:
    from playwright.async_api import expect

    (patient_ctx, patient, patient_log), (staff_ctx, staff, staff_log), _ = \
        await start_consultation(server, browser, token)
    await expect(staff.locator("#grid .tile")).to_have_count(1)
    await expect(patient.locator("#grid .tile")).to_have_count(1)

    pages = {"patient": patient, "staff": staff}
    samples: dict[str, list[tuple[float, dict[str, Any]]]] = {name: [] for name in pages}
    start = time.monotonic()
    thrown = 0
    dropped_before = sum(server.counters.dropped.values())
    while (elapsed := time.monotonic() - start) < CALL_SECONDS:
        if not thrown and elapsed >= GARBAGE_AT:
            thrown = throw_garbage(server)
        for name, page in pages.items():
            sample = await page.evaluate(SAMPLE_JS)
            if sample is not None:
                samples[name].append((elapsed, sample))
                assert sample["banner"] == "", (
                    f"{name} page shows a banner at {elapsed:.0f} s: {sample['banner']!r}; "
                    f"stats {await rtp_stats(page)}")
                # the page tells a reduced picture only once it lasts (5 s): what the server
                # said counts too, so a short degradation cannot hide behind that delay
                assert sample["level"] in (None, "good"), (
                    f"{name} page was told {sample['level']!r} at {elapsed:.0f} s; "
                    f"stats {await rtp_stats(page)}")
        await asyncio.sleep(1.0)

    report = []
    for receiver, sender in (("patient", "staff"), ("staff", "patient")):
        t0, t1 = CALL_SECONDS - LAST_WINDOW, CALL_SECONDS
        decoded = at(samples[receiver], t1)["decoded"] - at(samples[receiver], t0)["decoded"]
        encoded = at(samples[sender], t1)["encoded"] - at(samples[sender], t0)["encoded"]
        report.append(f"{receiver} decoded {decoded} of the {encoded} frames {sender} encoded")
        assert encoded > 10 * LAST_WINDOW, f"{sender} hardly encoded: {report}"
        assert decoded >= 0.9 * encoded, f"{report}; stats {await rtp_stats(pages[receiver])}"
        # audio flows throughout: more packets in every 5 s window of the call
        audio = [(when, s["audioIn"]) for when, s in samples[receiver]]
        for w in range(5, int(CALL_SECONDS) - 4, 5):
            assert at(samples[receiver], w + 5)["audioIn"] > at(samples[receiver], w)["audioIn"], (
                f"{receiver}: no audio between {w} and {w + 5} s: {audio}")
    assert thrown >= 2 * 2 * len(garbage()), thrown  # two participants, two ways each
    # what reached the media path was dropped and counted (the stranger's at the address check)
    assert sum(server.counters.dropped.values()) - dropped_before >= len(garbage()), \
        server.counters.dropped
    print("\n" + "; ".join(report))
    for log in (patient_log, staff_log):
        assert not log.errors, log.errors
    for context in (patient_ctx, staff_ctx):
        await context.close()
