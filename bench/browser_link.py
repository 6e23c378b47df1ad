"""Chromium behind a shaped downlink: how fast is video capped, and how fast does it come back?

    python -m bench.browser_link                      # 700 kbit/s for 25 s, then 3000 kbit/s
    python -m bench.browser_link --steps 700:25,3000:20,400:20,3000:20

Colleagues in the meeting room ``team``: ``--senders`` Chromium pages on the host (2 by default;
each publishes the fake camera, about 480 kbit/s of VP8, so that 700 kbit/s is a real limit) and
one Chromium page inside a network namespace whose downlink is shaped with ``tc tbf``
(bench/netns.py; needs root). Once a second it prints, for the shaped
page: the capacity, what it received (kbit/s, video fps decoded, audio packets), the quality
level it was told, and the server's view (downlink estimate, loss, whether the video it
receives is paused). At the end: when video was first capped or paused after each step down,
when it was back (>= 10 fps decoded) after each step up, and whether audio ever stopped for 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import netns
from bench.browser_call import SECRET
from bench.chromium_ns import PAGE_STATS_JS, lab_server, launch, open_room
from sfu.auth import mint_token


def token(sub: str) -> str:
    return mint_token(SECRET, sub=sub, role="staff", clinic="demo", name=sub, ttl=3600,
                      now=time.time())


async def run(steps: list[tuple[float, float]], *, n_senders: int = 2,
              verbose: bool = True) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    ok, why = netns.available()
    if not ok:
        raise SystemExit(f"needs network namespaces: {why}")
    rows: list[dict[str, Any]] = []
    with netns.Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        address = lab.server_address
        server, url = await lab_server(address, SECRET)
        link = lab.add(down_kbit=steps[0][0])
        async with async_playwright() as p:
            host = await launch(p, url)
            shaped = await launch(p, url, ns=link.ns, tmp=Path(tmp))
            try:
                senders = []
                for i in range(n_senders):
                    sender, _ = await open_room(host, url, "team", token(f"sender{i}"), wait=False)
                    senders.append(sender)
                page, shaped_id = await open_room(shaped, url, "team", token("shaped"))
                start = time.monotonic()
                boundaries = []
                t_end = 0.0
                for kbit, seconds in steps:
                    boundaries.append((t_end, kbit))
                    t_end += seconds
                step = 0
                while (t := time.monotonic() - start) < t_end:
                    while step + 1 < len(boundaries) and t >= boundaries[step + 1][0]:
                        step += 1
                        link.set_downlink(boundaries[step][1])
                    sample = await page.evaluate(PAGE_STATS_JS) or {}
                    sent = await senders[0].evaluate(PAGE_STATS_JS) or {}
                    participant = None
                    for call in server.calls.by_key.values():
                        participant = call.participants.get(shaped_id) or participant
                    now = time.monotonic()
                    row = {"t": round(t, 1), "capacity": boundaries[step][1], **sample,
                           "sender_encoded": sent.get("encoded", 0)}
                    if participant is not None:
                        est = participant.link.down_kbps(now)
                        gcc = participant.link.gcc
                        row.update(sent=round(participant.link.sent_kbps),
                                   rtx=server.counters.retransmitted,
                                   nacks=server.counters.nacks,
                                   gcc=None if gcc is None else gcc.state[:5],
                                   delay_kbps=None if gcc is None else round(gcc.delay_based_kbps),
                                   acked=None if gcc is None or gcc.acknowledged_kbps is None
                                   else round(gcc.acknowledged_kbps),
                                   padding_kb=participant.endpoint.padding_octets // 1000,
                                   estimate=None if est is None else round(est),
                                   loss=round(participant.link.loss, 3),
                                   paused=sum(1 for c in participant.endpoint.consumers()
                                              if c.paused and c.producer.kind == "video"))
                    rows.append(row)
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start - t)))
            finally:
                await host.close()
                await shaped.close()
        await server.close()
    report = summarize(rows, boundaries, verbose=verbose)
    return {"rows": rows, **report}


def summarize(rows: list[dict[str, Any]], boundaries: list[tuple[float, float]],
              *, verbose: bool) -> dict[str, Any]:
    prev: dict[str, Any] | None = None
    out_rows = []
    for row in rows:
        if prev is not None:
            dt = max(0.1, row["t"] - prev["t"])
            row["fps"] = round((row.get("decoded", 0) - prev.get("decoded", 0)) / dt, 1)
            row["kbps"] = round((row.get("videoBytes", 0) - prev.get("videoBytes", 0)) * 8 / 1000 / dt)
            row["audio"] = row.get("audioIn", 0) - prev.get("audioIn", 0)
            row["rtx_n"] = row.get("rtx", 0) - prev.get("rtx", 0)
            row["nack_n"] = row.get("nacks", 0) - prev.get("nacks", 0)
            out_rows.append(row)
        prev = row
    if verbose:
        print(f"{'t':>5} {'cap':>5} {'kbps':>5} {'fps':>5} {'audio':>5} {'level':>10} "
              f"{'est':>5} {'loss':>6} {'paused':>6} {'pad kB':>6} {'sent':>5} {'rtx':>4} {'nack':>4} "
              f"{'gcc':>5} {'delay':>5} {'acked':>5}")
        for r in out_rows:
            print(f"{r['t']:5.1f} {r['capacity']:5.0f} {r['kbps']:5d} {r['fps']:5.1f} "
                  f"{r['audio']:5d} {r.get('level', '-'):>10} {str(r.get('estimate')):>5} "
                  f"{str(r.get('loss')):>6} {str(r.get('paused')):>6} {r.get('padding_kb', '-'):>6} "
                  f"{str(r.get('sent')):>5} {r.get('rtx_n', 0):4d} {r.get('nack_n', 0):4d} "
                  f"{str(r.get('gcc')):>5} {str(r.get('delay_kbps')):>5} {str(r.get('acked')):>5}")
    events = []
    for i, (t0, kbit) in enumerate(boundaries):
        t1 = boundaries[i + 1][0] if i + 1 < len(boundaries) else float("inf")
        window = [r for r in out_rows if t0 <= r["t"] < t1]
        lowered = i > 0 and kbit < boundaries[i - 1][1]
        if i == 0 or lowered:
            hit = next((r["t"] - t0 for r in window
                        if r.get("paused") or r.get("level") in ("degraded", "audio_only")), None)
            events.append({"step": kbit, "kind": "down", "adapted_after_s": hit})
        else:
            back = next((r["t"] - t0 for r in window if r.get("fps", 0) >= 10
                         and not r.get("paused")), None)
            events.append({"step": kbit, "kind": "up", "video_back_after_s": back})
    silent = [r["t"] for r in out_rows if r.get("audio", 1) == 0]
    audio_gap = any(b - a <= 1.5 for a, b in zip(silent, silent[1:], strict=False))
    if verbose:
        for e in events:
            print(e)
        print(f"audio silent for 2 s or more: {audio_gap} (silent seconds: {silent})")
    return {"events": events, "audio_gap": audio_gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="700:25,3000:20",
                        help="kbit:seconds,... of the shaped downlink (default 700:25,3000:20)")
    parser.add_argument("--senders", type=int, default=2, help="publishing pages on the host")
    args = parser.parse_args()
    steps = [(float(a), float(b)) for a, b in (s.split(":") for s in args.steps.split(","))]
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    asyncio.run(run(steps, n_senders=args.senders))


if __name__ == "__main__":
    main()
