"""Reproduce "a consultation between real browsers stays a video consultation" and measure it.

A real server in this process (embedded default config, clinic ``demo``, a free port on
127.0.0.1), two headless Chromium pages (the patient's entry page and the staff dashboard, as in
tests/browser/test_patient_consultation.py), a consultation of ``--seconds``; once a second:

* per page: inbound-rtp video (packetsReceived, packetsLost, framesDecoded, fps, width, nackCount),
  outbound-rtp video (bytesSent -> kbit/s, targetBitrate), candidate-pair
  availableOutgoingBitrate, and the quality level the page was told;
* per participant on the server: the link (RR loss, loss, downlink estimate, last REMB), whether
  the video it receives is paused, and per outgoing video SSRC what went on the wire: packets,
  sequence-number holes (what the browser counts as lost), resends of an already sent seq;
* the transport's drop counters;
* per participant, the packets that arrived with a transport-wide sequence number and the
  transport feedback packets the server sent it (transport-cc on its uplink).

Experiments (``--variant``) change one thing on the server to isolate the cause:
  none          the product as it is
  no-pause      the quality controller never pauses video (REMB caps still sent)
  min1          [bandwidth] min_video_kbps = 1 (and min_audio 1)
  burst         every RR on the server says 30 % lost for 3 s (8-11 s after the first report;
                BURST=start,end,fraction overrides):
                a transient loss episode; does paused video come back afterwards?
  burst-no-remb the same, with the receivers' REMB not capping the downlink estimate
  loop-arrivals transport feedback reports arrival times as the event loop reads the packets
                (no kernel receive timestamps): with --stall, what a busy server did before

``--stall MS`` blocks the server's event loop for MS milliseconds once a second (a busy server:
what a loaded machine does to it), without burning CPU.

Run:  cd /work/wt-cc && /work/main/.venv/bin/python -m bench.browser_call --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from sfu.auth import mint_token
from sfu.service.config import default_config
from sfu.transport import aiortc_glue
from sfu.transport.packets import parse_rtcp

SECRET = "bench-secret-0123456789abcdef-0123"
PATIENT_NAME = "Ada Benchpatient"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
]

PAGE_STATS_JS = """async () => {
  const call = window.sfuCall;
  if (!call || !call.pc) return null;
  const out = {inb: [], outb: [], pair: null, quality: call.quality || null};
  const stats = await call.pc.getStats();
  let selected = null;
  stats.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) selected = r.selectedCandidatePairId; });
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") out.inb.push({ssrc: r.ssrc, mid: r.mid,
      rx: r.packetsReceived, lost: r.packetsLost, fd: r.framesDecoded, fps: r.framesPerSecond || 0,
      w: r.frameWidth || 0, nack: r.nackCount, bytes: r.bytesReceived, kfd: r.keyFramesDecoded,
      disc: r.packetsDiscarded, fec: r.fecPacketsReceived, rtxrx: r.retransmittedPacketsReceived});
    if (r.type === "outbound-rtp" && r.kind === "video") out.outb.push({ssrc: r.ssrc,
      bytes: r.bytesSent, hdr: r.headerBytesSent, pad: r.paddingBytesSent || 0,
      rtx: r.retransmittedBytesSent || 0, target: r.targetBitrate || 0, pkts: r.packetsSent,
      qlr: r.qualityLimitationReason});
    if (r.type === "candidate-pair" && (selected ? r.id === selected : r.nominated && r.state === "succeeded"))
      out.pair = {aob: r.availableOutgoingBitrate || 0, aib: r.availableIncomingBitrate || 0,
                  rtt: r.currentRoundTripTime};
  });
  return out;
}"""


# -- what went on the wire, per outgoing SSRC (hook on the synchronous sender) -----------------
class WireLog:
    """Sequence numbers each outgoing RTP stream put on the wire, before SRTP."""

    def __init__(self) -> None:
        self.streams: dict[int, dict[str, Any]] = {}
        self.padding_only = 0

    def rtp(self, data: bytes) -> None:
        if len(data) < 12:
            return
        seq, ssrc = struct.unpack_from("!H", data, 2)[0], struct.unpack_from("!I", data, 8)[0]
        st = self.streams.get(ssrc)
        if st is None:
            st = self.streams[ssrc] = {"first": seq, "max": seq, "cycles": 0, "seen": set(),
                                       "resent": 0, "pkts": 0}
        delta = (seq - st["max"]) & 0xFFFF
        if 0 < delta < 0x8000:
            if seq < st["max"]:
                st["cycles"] += 1 << 16
            st["max"] = seq
            ext = st["cycles"] + seq
        else:
            ext = st["cycles"] + seq - (0x10000 if seq > st["max"] else 0)
        if ext in st["seen"]:
            st["resent"] += 1
        st["seen"].add(ext)
        st["pkts"] += 1

    def holes(self, ssrc: int) -> int:
        st = self.streams.get(ssrc)
        if st is None:
            return 0
        expected = st["cycles"] + st["max"] - st["first"] + 1
        return expected - len(st["seen"])


WIRE = WireLog()


def hook_wire() -> None:
    original = aiortc_glue.WireSender.send_rtp

    def send_rtp(self: Any, data: bytes) -> None:
        WIRE.rtp(data)
        original(self, data)

    aiortc_glue.WireSender.send_rtp = send_rtp  # type: ignore[method-assign]


# -- what each page tells the server in RTCP (REMB, RR blocks on video, NACKs, PLIs) ----------
RTCP_LOG: dict[str, dict[str, Any]] = {}


def hook_rtcp() -> None:
    from sfu.transport.endpoint import Endpoint
    original = Endpoint._on_rtcp

    def _on_rtcp(self: Any, data: bytes, now: float) -> None:
        log = RTCP_LOG.setdefault(self.id, {"remb": None, "rr": [], "nack": 0, "pli": 0})
        try:
            for m in parse_rtcp(data):
                name = type(m).__name__
                if name == "Remb":
                    log["remb"] = m.bitrate / 1000
                elif name == "Nack":
                    log["nack"] += len(m.lost)
                elif name == "Pli":
                    log["pli"] += 1
                elif name in ("ReceiverReport", "SenderReport"):
                    for b in m.reports:
                        out = self.out_by_ssrc.get(b.ssrc)
                        if out is not None:
                            log.setdefault("times", {}).setdefault(out.kind, []).append(
                                (round(now, 2), b.fraction_lost))
                        if out is not None and out.kind == "video":
                            log["rr"].append((b.fraction_lost, b.packets_lost, b.highest_seq))
        except ValueError:
            pass
        original(self, data, now)

    Endpoint._on_rtcp = _on_rtcp  # type: ignore[method-assign]


# -- experiments -------------------------------------------------------------------------------
def apply_variant(variant: str) -> None:
    if variant in ("none", "min1"):
        return
    if variant == "loop-arrivals":
        aiortc_glue.SO_TIMESTAMPNS = -1  # never matches a control message: no kernel time
        return
    if variant in ("burst", "burst-no-remb"):
        # a transient real-looking loss episode: every receiver report in seconds 8-11 after the
        # first report says 30 % lost; afterwards the reports are the browser's own (0 %)
        from sfu.calls.link import Link
        original = Link.on_report
        first: dict[int, float] = {}

        def on_report(self: Any, block: Any, rtt: Any) -> None:
            now = time.monotonic()
            start = first.setdefault(id(self), now)
            lo, hi, frac = (float(x) for x in os.environ.get("BURST", "8,11,0.3").split(","))
            if lo <= now - start < hi:
                block = dataclasses.replace(block, fraction_lost=int(frac * 256))
            original(self, block, rtt)

        Link.on_report = on_report  # type: ignore[method-assign]
        if variant == "burst-no-remb":
            from sfu.bandwidth.downlink import DownlinkEstimator
            DownlinkEstimator.on_remb = lambda self, now, kbps: None  # type: ignore[method-assign]
        return
    if variant == "no-pause":
        from sfu.transport.forwarder import Consumer
        original = Consumer.set_paused

        def set_paused(self: Any, paused: bool, now: float) -> None:
            original(self, False, now)

        Consumer.set_paused = set_paused  # type: ignore[method-assign]
        return
    raise SystemExit(f"unknown variant {variant}")


async def main() -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--variant", default="none")
    ap.add_argument("--json", help="write the per-second rows here")
    ap.add_argument("--headful", action="store_true")
    ap.add_argument("--stall", type=float, default=0.0,
                    help="block the server's event loop this many ms once a second")
    args = ap.parse_args()

    hook_wire()
    hook_rtcp()
    apply_variant(args.variant)

    from playwright.async_api import async_playwright, expect

    from sfu.service.server import Server

    cfg = default_config()
    cfg = dataclasses.replace(cfg, auth=dataclasses.replace(cfg.auth, secret=SECRET))
    if args.variant == "min1":
        cfg = dataclasses.replace(cfg, bandwidth=dataclasses.replace(
            cfg.bandwidth, min_video_kbps=1, min_audio_kbps=1))
    server = Server(cfg)
    await server.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.port}"
    print(f"server {url} variant={args.variant}", flush=True)


    rows: list[dict[str, Any]] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                          headless=not args.headful, args=CHROMIUM_ARGS)
        pages = {}
        for who in ("patient", "staff"):
            ctx = await browser.new_context(viewport={"width": 1200, "height": 800})
            page = await ctx.new_page()
            page.set_default_timeout(30_000)
            pages[who] = page
        patient, staff = pages["patient"], pages["staff"]
        await patient.goto(f"{url}/c/demo")
        await patient.fill("#name", PATIENT_NAME)
        await patient.click("#enter")
        await expect(patient.locator("#waiting-title")).to_have_text("You are in the waiting area")
        token = mint_token(SECRET, sub="dr-lee", role="staff", clinic="demo", name="Dr Lee")
        await staff.goto(f"{url}/c/demo/dashboard#token={token}")
        row = staff.locator("#spaces tr", has_text=PATIENT_NAME)
        await expect(row.locator(".presence")).to_have_text("connected")
        await row.get_by_role("button", name="Join").click()
        await expect(row.locator(".status")).to_have_text("In consultation")
        t0 = time.monotonic()
        print("joined; sampling", flush=True)
        lag = [0.0]  # the server's event loop: the longest a 10 ms sleep overran, this second

        async def watch_lag() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                lag[0] = max(lag[0], time.monotonic() - before - 0.01)

        lag_task = asyncio.ensure_future(watch_lag())

        async def stall() -> None:
            while True:
                await asyncio.sleep(1.0)
                time.sleep(args.stall / 1000)  # noqa: ASYNC251 - blocks the loop on purpose

        stall_task = asyncio.ensure_future(stall()) if args.stall > 0 else None

        prev_bytes: dict[str, int] = {}
        prev_wire: dict[int, tuple[int, int]] = {}
        prev_fd: dict[str, int] = {}
        prev_pl: dict[str, tuple[int, int]] = {}
        header = (f"{'t':>3} {'who':7} | {'rx':>5} {'lost':>4} {'dLost':>5} {'fd/s':>4} {'w':>4} "
                  f"{'nack':>4} | {'tx':>5} {'tgt':>5} {'aob':>5} | {'RR%':>5} {'loss%':>5} "
                  f"{'down':>5} {'remb':>5} {'sent':>5} {'P':1} | {'wire':>5} {'holes':>5} {'dHol':>4} "
                  f"{'resnt':>5} | quality | twcc-in fb-sent fb-lost")
        print(header, flush=True)
        while time.monotonic() - t0 < args.seconds:
            await asyncio.sleep(1.0)
            t = time.monotonic() - t0
            now_mono = time.monotonic()
            participants = {p_.role: p_ for call in server.calls.by_key.values()
                            for p_ in call.members()}
            for who, page in pages.items():
                role = "patient" if who == "patient" else "staff"
                part = participants.get(role)
                try:
                    st = await page.evaluate(PAGE_STATS_JS)
                except Exception as exc:  # noqa: BLE001
                    st = None
                    print(f"{who}: stats failed {exc}")
                if not st:
                    continue
                inb = st["inb"][0] if st["inb"] else {}
                outb = st["outb"][0] if st["outb"] else {}
                bytes_now = outb.get("bytes", 0) or 0
                tx = (bytes_now - prev_bytes.get(who, bytes_now)) * 8 / 1000
                prev_bytes[who] = bytes_now
                fd = inb.get("fd", 0) or 0
                dfd = fd - prev_fd.get(who, fd)
                prev_fd[who] = fd
                lost = inb.get("lost", 0) or 0
                rxp = inb.get("rx", 0) or 0
                dlost = lost - prev_pl.get(who, (lost, rxp))[0]
                prev_pl[who] = (lost, rxp)
                srv: dict[str, Any] = {}
                if part is not None:
                    link = part.link
                    dl = link.downlink
                    vids = [c for c in part.endpoint.consumers() if c.producer.kind == "video"]
                    paused = any(c.paused for c in vids)
                    out_ssrc = vids[0].out.ssrc if vids else None
                    log = RTCP_LOG.get(part.endpoint.id, {})
                    rr = log.get("rr", [])
                    rr_pct = max((b[0] for b in rr), default=0) / 2.56
                    if log:
                        log["rr"] = []
                    wire = WIRE.streams.get(out_ssrc, {}) if out_ssrc else {}
                    holes = WIRE.holes(out_ssrc) if out_ssrc else 0
                    pw = prev_wire.get(out_ssrc, (0, 0)) if out_ssrc else (0, 0)
                    if out_ssrc:
                        prev_wire[out_ssrc] = (wire.get("pkts", 0), holes)
                    srv = {"rr_pct": rr_pct, "loss": link.loss * 100,
                           "down": link.down_kbps(now_mono), "remb": log.get("remb"),
                           "sent": dl.sent_kbps(now_mono), "paused": paused,
                           "wire_pkts": wire.get("pkts", 0), "holes": holes,
                           "dholes": holes - pw[1], "resent": wire.get("resent", 0),
                           "out_ssrc": out_ssrc, "nack_in": log.get("nack", 0),
                           # (getattr: the script also runs against an older sfu)
                           "twcc_in": getattr(part.endpoint, "twcc_in_packets", None),
                           "fb_sent": getattr(part.endpoint, "feedback_sent", None),
                           "fb_lost": getattr(getattr(part.endpoint, "twcc_in", None),
                                              "reported_lost", None)}
                rec = {"t": round(t, 1), "who": who, "inb": inb, "outb": outb, "pair": st["pair"],
                       "tx_kbps": tx, "dfd": dfd, "dlost": dlost, "quality": st["quality"], **srv,
                       "dropped": dict(server.counters.dropped)}
                rows.append(rec)
                q = st["quality"] or {}

                def f(v: Any, spec: str = ">5.0f") -> str:
                    return format(v, spec) if isinstance(v, (int, float)) else f"{'-':>5}"
                print(f"{t:3.0f} {who:7} | {rxp:5d} {lost:4d} {dlost:5d} {dfd:4d} {inb.get('w', 0):4d} "
                      f"{inb.get('nack', 0) or 0:4d} | {tx:5.0f} {(outb.get('target', 0) or 0) / 1000:5.0f} "
                      f"{((st['pair'] or {}).get('aob', 0) or 0) / 1000:5.0f} | "
                      f"{f(srv.get('rr_pct'), '>5.1f')} {f(srv.get('loss'), '>5.1f')} "
                      f"{f(srv.get('down'))} {f(srv.get('remb'))} {f(srv.get('sent'))} "
                      f"{'P' if srv.get('paused') else '.'} | {srv.get('wire_pkts', 0):5d} "
                      f"{srv.get('holes', 0):5d} {srv.get('dholes', 0):4d} {srv.get('resent', 0):5d} | "
                      f"{q.get('level', '')} | {srv.get('twcc_in', '-')} {srv.get('fb_sent', '-')} {srv.get('fb_lost', '-')}", flush=True)
            print(f"    loop lag max {lag[0] * 1000:.0f} ms; dropped={dict(server.counters.dropped)} nacks_in={server.counters.nacks} "
                  f"retx={server.counters.retransmitted} nacks_up={server.counters.nacks_sent} "
                  f"plis={server.counters.plis}", flush=True)
            lag[0] = 0.0
        for task in (lag_task, stall_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        banners = {}
        for who, page in pages.items():
            try:
                banners[who] = await page.locator("#banner").text_content()
            except Exception:  # noqa: BLE001
                banners[who] = None
        print("banners:", json.dumps(banners))
        for eid, log in RTCP_LOG.items():
            for kind, times in log.get("times", {}).items():
                ts = [t_ for t_, _ in times]
                gaps = [round(b - a, 2) for a, b in zip(ts, ts[1:], strict=False)]
                print(f"RR blocks from {eid} on {kind}: n={len(ts)} intervals(s) "
                      f"min={min(gaps, default=0)} max={max(gaps, default=0)} "
                      f"mean={sum(gaps) / max(1, len(gaps)):.2f} max fraction_lost={max(f_ for _, f_ in times)}/256")
        # upstream: what the server saw from each publisher
        for call in server.calls.by_key.values():
            for p_ in call.members():
                for prod in p_.endpoint.producers.values():
                    s = prod.stats
                    print(f"producer {p_.role} {prod.kind}: packets={prod.packets} "
                          f"expected={s.expected} lost={s.lost}")
        await browser.close()
    await server.close()
    summarize(rows)
    return rows


def summarize(rows: list[dict[str, Any]]) -> None:
    for who in ("patient", "staff"):
        mine = [r for r in rows if r["who"] == who]
        if not mine:
            continue
        last20 = [r for r in mine if r["t"] >= mine[-1]["t"] - 20]
        fps20 = sum(r["dfd"] for r in last20) / max(1, len(last20))
        inb = mine[-1]["inb"]
        paused_s = sum(1 for r in mine if r.get("paused"))
        print(f"SUMMARY {who}: inbound packetsReceived={inb.get('rx')} packetsLost={inb.get('lost')} "
              f"(browser) ; server wire holes={mine[-1].get('holes')} resent={mine[-1].get('resent')} ; "
              f"max RR loss {max((r.get('rr_pct') or 0) for r in mine):.1f}% ; paused {paused_s}/{len(mine)} s ; "
              f"decoded fps last 20 s {fps20:.1f}; quality {mine[-1]['quality']}")


if __name__ == "__main__":
    try:
        rows = asyncio.run(main())
        if "--json" in sys.argv:
            Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(rows, default=str))
    except KeyboardInterrupt:
        sys.exit(1)
