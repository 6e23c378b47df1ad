"""Bandwidth bench: a five-person call, one subscriber's downlink stepping, over real shaped links.

    sudo python -m bench.bandwidth                       # both subscribers, 2000,700,400,1500,3000
    sudo python -m bench.bandwidth --subscriber chromium --steps 3000,500,1200 --step-seconds 20
    sudo python -m bench.bandwidth --json /tmp/bw.json   # also the per-second samples and tables
    python -m bench.bandwidth --from-json /tmp/bw.json --out /tmp/bw.png   # draw a saved run again

Needs root (network namespaces, veth pairs, ``tc qdisc ... tbf``; see bench/netns.py). The
server runs in this process, bound to the lab's server address, so its downlink estimate for
the constrained subscriber is read directly from its ``Link`` once a second. Four publishers,
``u0``..``u3``, run as ``python -m sfu.client.run`` in the root namespace (unshaped: the server
address is local); each follows the server's REMB between renditions of 150-1200 kbit/s, so
the subscriber's demand is up to 4 x 1200 kbit/s, more than the largest step. The fifth
participant, the constrained subscriber ``slow``, is in a namespace whose veth is shaped by
tbf; every ``--step-seconds`` the bench changes that tbf rate (the true capacity). ``slow`` is

* ``synthetic``: one more ``python -m sfu.client.run`` (sends REMB and transport-cc feedback
  as Chromium does), or
* ``chromium``: a headless Chromium page of the web client (the meeting room page) running
  in the namespace (bench/chromium_ns.py), read once a second through getStats.

Both publish too (unshaped uplink). ``--subscriber both`` (the default) runs one after the
other and draws them side by side in one PNG (``--out``, default ``bandwidth.png``): over time,
the true capacity, the server's estimate, what it sent (media, and probe padding), what went
through the shaper and what the subscriber received, with the quality levels it was told; below,
the loss at the subscriber, the shaper's drops, the videos paused for it and those it received
(synthetic) or decoded (Chromium); at the bottom, the retransmissions the server sent on NACKs.
Then a table per step: see bench/bandwidth_report.py.

Rates are RTP bytes (headers included, not UDP/IP/SRTP overhead: about 40 bytes a packet)
except "through the shaper" (IP packets, everything); a link saturated at the tbf rate shows
~85-90 % of it as RTP. Figures come from one run on a shared machine: compare steps of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import netns
from bench.bandwidth_report import (
    format_table,
    level_changes,
    plot,
    publisher_demand,
    summarize,
    synthetic_received,
)

SECRET = "bench-secret-0123456789abcdef-xyz"
CLIP_SECONDS = 10.0
DEFAULT_STEPS = "2000,700,400,1500,3000"
SUBSCRIBERS = ("synthetic", "chromium")
PUBLISHERS = 4


def _token(sub: str) -> str:
    from sfu.auth import mint_token

    return mint_token(SECRET, sub=sub, role="staff", clinic="demo", name=sub, ttl=3600,
                      now=time.time())


def _config(address: str) -> Any:
    import dataclasses

    from sfu.auth import AuthSettings
    from sfu.service.config import default_config
    from sfu.service.settings import LoggingSettings
    from sfu.transport.settings import MediaSettings

    cfg = default_config()
    return dataclasses.replace(
        cfg, auth=AuthSettings(secret=SECRET), logging=LoggingSettings(level="WARNING"),
        media=MediaSettings(ice_addresses=[address], inactivity_timeout=15.0))


# --------------------------------------------------------------------------- the subscribers

class SyntheticSubscriber:
    """``python -m sfu.client.run`` in the shaped namespace; its stats lines are read at the end."""

    kind = "synthetic"

    def __init__(self, url: str, link: netns.Link, clip_dir: Path, seconds: float) -> None:
        self.proc = netns.ClientProcess(link.exec_argv(netns.client_argv(
            url, _token("slow"), room="team", seconds=seconds, ice_address=link.ns_addr,
            clip_dir=str(clip_dir), clip_seconds=CLIP_SECONDS)), "slow")

    async def start(self, stack: contextlib.AsyncExitStack) -> str:
        stack.push_async_callback(self.proc.stop)
        await self.proc.start()
        await self.proc.wait_joined_or_refused(60)
        if self.proc.participant is None:
            raise RuntimeError(f"slow was not admitted: {self.proc.refused or self.proc.events[-3:]}")
        return self.proc.participant

    @property
    def participant_id(self) -> str | None:
        return self.proc.participant

    async def sample(self, start_wall: float) -> None:
        pass  # the client prints its stats once a second by itself

    def received(self, start_wall: float) -> list[dict[str, Any]]:
        return synthetic_received(self.proc.stats, start_wall)  # type: ignore[arg-type]

    def levels(self, start_wall: float) -> list[dict[str, Any]]:
        return [{"t": float(e["wall"]) - start_wall, "level": e["message"]["level"]}  # type: ignore[arg-type,index]
                for e in self.proc.events if e["event"] == "message"
                and e["message"].get("type") == "quality"]  # type: ignore[union-attr]


class ChromiumSubscriber:
    """The web client's meeting room page in a headless Chromium inside the shaped namespace."""

    kind = "chromium"

    def __init__(self, url: str, link: netns.Link, tmp: Path) -> None:
        self.url, self.link, self.tmp = url, link, tmp
        self.page: Any = None
        self.samples: list[dict[str, Any]] = []
        self._pending: asyncio.Future[None] | None = None
        self.joined_as: str | None = None

    async def start(self, stack: contextlib.AsyncExitStack) -> str:
        from playwright.async_api import async_playwright

        from bench.chromium_ns import launch, open_room

        playwright = await stack.enter_async_context(async_playwright())
        browser = await launch(playwright, self.url, ns=self.link.ns, tmp=self.tmp)
        stack.push_async_callback(browser.close)
        stack.push_async_callback(self.stop)
        self.page, participant = await open_room(browser, self.url, "team", _token("slow"))
        if participant is None:
            raise RuntimeError("the Chromium page did not join")
        self.joined_as = str(participant)
        return self.joined_as

    @property
    def participant_id(self) -> str | None:
        """The page's participant id as of its latest sample (a page that reconnected has
        joined again under a new one)."""
        for s in reversed(self.samples):
            if s.get("self"):
                return str(s["self"])
        return self.joined_as

    async def sample(self, start_wall: float) -> None:
        """Start reading the page's counters unless the last reading is still under way (a
        busy machine): the sampling loop does not wait for it; a sample is timed when it
        returns."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._read(start_wall))

    async def _read(self, start_wall: float) -> None:
        from bench.chromium_ns import PAGE_STATS_JS

        try:
            stats = await self.page.evaluate(PAGE_STATS_JS)
        except Exception as exc:  # noqa: BLE001 - a missed sample, not a failed run
            print(f"  getStats failed: {exc!r}", flush=True)
            return
        if stats:
            # timed by getStats itself when it says (the answer may come late on a busy machine)
            at = stats["at"] / 1000 if stats.get("at") else time.time()
            self.samples.append({**stats, "t": at - start_wall})

    async def stop(self) -> None:
        if self._pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pending, 5.0)

    def received(self, start_wall: float) -> list[dict[str, Any]]:
        from bench.chromium_ns import inbound_rates

        return [inbound_rates(a, b) for a, b in zip(self.samples, self.samples[1:], strict=False)]

    def levels(self, start_wall: float) -> list[dict[str, Any]]:
        return level_changes([(s["t"], s["level"]) for s in self.samples])


# --------------------------------------------------------------------------- one run

class CallLog(logging.Handler):
    """The call's own account of who joined, left or failed (``sfu.calls.call`` INFO lines)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.created, record.getMessage()))



async def run(subscriber: str, steps: list[float], step_seconds: float, warmup: float,
              clip_dir: Path) -> dict[str, Any]:
    """A five-person call with ``subscriber`` ("synthetic" or "chromium") behind the steps."""
    from sfu.client.media import ClipParams, load_clip
    from sfu.service.server import Server

    load_clip(clip_dir, ClipParams(seconds=CLIP_SECONDS))  # encode once, before the clients
    total = warmup + step_seconds * len(steps)
    call_log = CallLog()
    logger = logging.getLogger("sfu.calls.call")
    logger.addHandler(call_log)
    logger.setLevel(logging.INFO)
    with netns.Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        address = lab.server_address
        server = Server(_config(address))
        await server.start(address, 0)
        url = f"http://{address}:{server.port}"
        others: list[netns.ClientProcess] = []
        try:
            async with contextlib.AsyncExitStack() as stack:
                for i in range(PUBLISHERS):
                    p = netns.ClientProcess(netns.client_argv(
                        url, _token(f"u{i}"), room="team", seconds=total + 60,
                        ice_address=address, clip_dir=str(clip_dir),
                        clip_seconds=CLIP_SECONDS), f"u{i}")
                    others.append(p)
                    stack.push_async_callback(p.stop)
                    await p.start()
                    await p.wait_joined_or_refused(60)
                    if p.participant is None:
                        raise RuntimeError(f"{p.name} was not admitted: {p.refused}")
                link = lab.add(down_kbit=steps[0])
                sub: SyntheticSubscriber | ChromiumSubscriber
                if subscriber == "synthetic":
                    sub = SyntheticSubscriber(url, link, clip_dir, total + 30)
                else:
                    sub = ChromiumSubscriber(url, link, Path(tmp))
                participant = await sub.start(stack)
                present = len(server.calls.by_key[next(iter(server.calls.by_key))].participants)
                print(f"  {subscriber} subscriber joined as {participant}; {present} of "
                      f"{PUBLISHERS + 1} participants in the call; sampling", flush=True)
                start_wall, rows, schedule = await _sample(server, link, sub, steps,
                                                           step_seconds, warmup)
                # client processes that had exited by the end of sampling, with their status
                exited = {p.name: p.proc.returncode  # type: ignore[attr-defined]
                          for p in [*others, getattr(sub, "proc", None)]
                          if p is not None and p.proc is not None
                          and p.proc.returncode is not None}  # type: ignore[attr-defined]
        finally:
            await server.close()
            logger.removeHandler(call_log)
    ends = [p for p in [*others, getattr(sub, "proc", None)] if p is not None]
    return {"subscriber": subscriber, "steps": steps, "step_seconds": step_seconds,
            "warmup": warmup, "schedule": schedule, "end": total, "start_wall": start_wall,
            "rows": rows, "received": sub.received(start_wall), "levels": sub.levels(start_wall),
            "call_log": [{"t": wall - start_wall, "message": m} for wall, m in call_log.lines
                         if (" left " in m or "failed" in m) and wall - start_wall <= total],
            "client_events": [{"t": float(e["wall"]) - start_wall, "client": p.name,  # type: ignore[arg-type]
                               "event": e["event"], **{k: v for k, v in e.items()
                                                       if k in ("reason", "error", "code")}}
                              for p in ends for e in p.events
                              if e["event"] in ("ended", "error", "refused", "left")
                              and float(e["wall"]) - start_wall <= total],  # type: ignore[arg-type]
            "exited_early": exited,
            "client_stderr": {p.name: p.stderr.decode(errors="replace")[-3000:]
                              for p in ends if p.stderr},
            "demand": publisher_demand([p.stats for p in others], start_wall,  # type: ignore[misc]
                                       [r["t"] for r in rows])}


async def _sample(server: Any, link: netns.Link, sub: SyntheticSubscriber | ChromiumSubscriber,
                  steps: list[float], step_seconds: float, warmup: float,
                  ) -> tuple[float, list[dict[str, Any]], list[float]]:
    """Once a second: capacity, the server's view of the subscriber, the shaper's counters."""
    (call,) = server.calls.by_key.values()
    start_wall = time.time()
    rows: list[dict[str, Any]] = []
    prev: tuple[str, float, int, int] | None = None
    prev_qdisc: tuple[float, dict[str, int]] | None = None
    step = 0
    schedule = [warmup + i * step_seconds for i in range(len(steps))]
    end = warmup + step_seconds * len(steps)
    while (elapsed := time.time() - start_wall) < end:
        while step + 1 < len(steps) and elapsed >= schedule[step + 1]:
            step += 1
            link.set_downlink(steps[step])
            print(f"  t={elapsed:5.1f} s: downlink -> {steps[step]:.0f} kbit/s", flush=True)
        pid = sub.participant_id
        participant = call.participants.get(pid) if pid else None
        now = time.monotonic()
        row: dict[str, Any] = {"t": round(elapsed, 2), "capacity_kbps": link.down_kbit,
                               "participant": pid if participant is not None else None,
                               "participants": len(call.participants),
                               "estimate_kbps": None, "sent_kbps": None, "padding_kbps": None,
                               "paused_videos": None, "videos": None}
        qdisc = link.qdisc_stats()
        # retransmissions answering NACKs, counted server-wide (the four others are on loopback:
        # nearly all of them go to the subscriber); not in sent_kbps
        qdisc["retransmitted"] = server.counters.retransmitted
        if ("bytes" in qdisc and prev_qdisc is not None and "bytes" in prev_qdisc[1]
                and now > prev_qdisc[0]):
            dt = now - prev_qdisc[0]
            row.update(link_kbps=(qdisc["bytes"] - prev_qdisc[1]["bytes"]) * 8 / 1000 / dt,
                       link_packets=qdisc["packets"] - prev_qdisc[1]["packets"],
                       link_dropped=qdisc["dropped"] - prev_qdisc[1]["dropped"],
                       retransmitted_pps=(qdisc["retransmitted"] - prev_qdisc[1]["retransmitted"])
                       / dt)
        prev_qdisc = (now, qdisc)
        if participant is not None:
            endpoint = participant.endpoint
            octets = sum(endpoint.sent_octets().values())
            padding = endpoint.padding_octets
            videos = [c for c in endpoint.consumers() if c.producer.kind == "video"]
            row.update(estimate_kbps=participant.link.down_kbps(now),
                       paused_videos=sum(1 for c in videos if c.paused), videos=len(videos),
                       overusing=participant.link.overusing, rr_loss=participant.link.loss)
            if prev is not None and prev[0] == pid and now > prev[1]:
                dt = now - prev[1]
                row.update(sent_kbps=(octets - prev[2]) * 8 / 1000 / dt,
                           padding_kbps=(padding - prev[3]) * 8 / 1000 / dt)
            prev = (str(pid), now, octets, padding)
        if rows and row["participant"] != rows[-1]["participant"]:
            print(f"  t={elapsed:5.1f} s: the subscriber is now {row['participant']} "
                  f"(was {rows[-1]['participant']})", flush=True)
        rows.append(row)
        await sub.sample(start_wall)
        await asyncio.sleep(max(0.0, 1.0 - (time.time() - start_wall - elapsed)))
    return start_wall, rows, schedule


# --------------------------------------------------------------------------- the command

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriber", choices=[*SUBSCRIBERS, "both"], default="both",
                        help="the constrained participant: a synthetic client, a Chromium page, "
                             "or one run of each (default)")
    parser.add_argument("--steps", type=parse_steps, default=parse_steps(DEFAULT_STEPS),
                        help=f"downlink capacities in kbit/s, comma separated ({DEFAULT_STEPS})")
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="extra seconds at the first capacity before stepping")
    parser.add_argument("--out", default="bandwidth.png", help="where to write the PNG")
    parser.add_argument("--json", help="also write the samples and the tables as JSON here")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: draw and tabulate the results a --json run saved")
    return parser.parse_args(argv)


def parse_steps(text: str) -> list[float]:
    try:
        steps = [float(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated kbit/s: {text}") from exc
    if not steps or any(s <= 0 for s in steps):
        raise argparse.ArgumentTypeError(f"at least one positive capacity: {text}")
    return steps


def subscribers(choice: str) -> list[str]:
    return list(SUBSCRIBERS) if choice == "both" else [choice]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        report(results, args)
        return 0
    ok, why = netns.available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    from sfu.client.media import default_clip_dir

    # on stderr: the server's warnings, and the call's lines on who joined, left or failed
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    steps = args.steps
    results = []
    for kind in subscribers(args.subscriber):
        print(f"{kind} subscriber: downlink {' -> '.join(f'{s:.0f}' for s in steps)} kbit/s, "
              f"{args.step_seconds:.0f} s each (+{args.warmup:.0f} s warm-up) ...", flush=True)
        results.append(asyncio.run(run(kind, steps, args.step_seconds, args.warmup,
                                       default_clip_dir())))
    report(results, args)
    return 0


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The PNG, the tables on stdout and (``--json``) the whole results."""
    tables = [summarize(r) for r in results]
    plot(results, Path(args.out))
    for result, table in zip(results, tables, strict=True):
        print()
        print(format_table(table, result))
    print(f"plot: {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**r, "table": t} for r, t in zip(results, tables, strict=True)], indent=1,
            default=str))


if __name__ == "__main__":
    sys.exit(main())
