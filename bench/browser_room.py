"""A full meeting room: Chromium pages and synthetic participants together, measured per pair.

Headless Chromium pages open the staff meeting-room page (``/c/{clinic}/rooms/{room}``, the project's
own web client, staff tokens) and synthetic participants run as ``python -m sfu.client.run``
subprocesses (pre-encoded VP8 renditions that follow REMB; REMB, receiver reports and transport-cc
feedback like Chromium), all in one room of a real server on loopback. Six is the call maximum: the
participant that fills the call is probed before it is admitted (docs/bandwidth.md).

Once a second, for every receiver and every other participant: video frames decoded (a page,
``getStats`` inbound-rtp ``framesDecoded`` by ``mid``, mapped to the participant by the ``tracks``
message) or received (a synthetic participant, VP8 frame starts), audio packets received; what each
participant sends (frames); the banner a page shows; and on the server each participant's downlink
estimate, the publishers whose video is paused for it and the REMB cap on its own video.

Run (table per second, then the last 20 s per pair):

    cd /work/wt-six && /work/main/.venv/bin/python -m bench.browser_room --seconds 60

``--pages``/``--synthetic`` set how many of each, ``--order`` who joins when (``p`` a page, ``s`` a
synthetic participant; the last one fills the call), ``--json FILE`` keeps every sample.
tests/browser/test_room_six.py runs the same scenario with assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sfu
from sfu.client.media import DEFAULT_RENDITIONS_KBPS, ClipParams, load_clip, load_renditions

CLIP_SECONDS = 5.0  # the clip length the netns tests cache too
REPO = Path(sfu.__file__).resolve().parents[1]  # the checkout the subprocesses import sfu from
ROOM_STATS_JS = """async () => {
  const call = window.sfuCall;
  const banner = (document.querySelector("#banner") || {});
  const out = {self: call ? call.selfId : null, inb: [], sent: 0, encoded: 0, w: 0, h: 0,
               fpsOut: 0, aob: 0, quality: call ? call.quality || null : null,
               banner: banner.hidden ? "" : (banner.textContent || ""),
               refused: !document.querySelector("#refused").hidden
                 ? document.querySelector("#refused-text").textContent : null};
  if (!call || !call.pc) return out;
  (await call.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp") {
      const info = call.tracks.get(String(r.mid));
      out.inb.push({ssrc: r.ssrc, kind: r.kind, mid: r.mid, owner: info ? info.participant : null,
                    frames: r.framesDecoded || 0, packets: r.packetsReceived || 0,
                    lost: r.packetsLost || 0, fps: r.framesPerSecond || 0});
    }
    // with simulcast one outbound-rtp per layer (rid): the picture's frames are those of the
    // layer that sent the most, its size that of the widest, the target the layers' sum
    if (r.type === "outbound-rtp" && r.kind === "video") {
      out.sent = Math.max(out.sent, r.framesSent || 0);
      out.encoded = Math.max(out.encoded, r.framesEncoded || 0);
      if ((r.frameWidth || 0) >= out.w) {
        out.w = r.frameWidth || 0; out.h = r.frameHeight || 0; out.fpsOut = r.framesPerSecond || 0;
      }
      out.target = (out.target || 0) + (r.targetBitrate || 0); out.qlr = r.qualityLimitationReason;
    }
    if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded")
      out.aob = r.availableOutgoingBitrate || 0;
  });
  return out;
}"""


@dataclass
class Sample:
    """What one participant had received and sent at ``t`` (monotonic seconds), cumulative."""

    t: float
    video: dict[str, int]  # sender's participant id -> video frames decoded / received
    audio: dict[str, int]  # sender's participant id -> audio packets received
    frames_sent: int  # video frames this participant published
    banner: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Member:
    """One participant of the room: a Chromium page or a synthetic subprocess."""

    label: str
    pid: str | None
    samples: list[Sample]
    refused: str | None

    async def sample(self) -> Sample | None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PageMember(Member):
    kind = "page"

    def __init__(self, label: str, context: Any, page: Any) -> None:
        self.label = label
        self.context = context
        self.page = page
        self.pid = None
        self.samples = []
        self.refused = None
        self.errors: list[str] = []
        self.console: list[str] = []
        self.rejoined: list[str | None] = []  # ids (None: none yet) the page had after its first
        self._owners: dict[int, tuple[str, str]] = {}  # inbound SSRC -> (kind, participant)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

    @classmethod
    async def open(cls, browser: Any, label: str, url: str) -> PageMember:
        context = await browser.new_context(viewport={"width": 1200, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(30_000)
        member = cls(label, context, page)
        await page.goto(url)
        return member

    async def wait_joined(self, within: float) -> None:
        """Until the page is in the call (its own id known) or refused."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            state = await self.page.evaluate(
                "() => ({self: window.sfuCall ? window.sfuCall.selfId : null,"
                " refused: document.querySelector('#refused').hidden ? null :"
                " document.querySelector('#refused-text').textContent})")
            if state["refused"]:
                self.refused = state["refused"]
                return
            if state["self"]:
                self.pid = state["self"]
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.label}: not joined within {within:.0f} s")

    async def sample(self) -> Sample | None:
        st = await self.page.evaluate(ROOM_STATS_JS)
        now = time.monotonic()
        if st["self"] != self.pid and st["self"] not in self.rejoined:
            # the page lost its call and joined again (or is reconnecting): a new participant
            self.rejoined.append(st["self"])
            self.console.append(f"rejoined as {st['self']} at {now:.1f}")
        video: dict[str, int] = {}
        audio: dict[str, int] = {}
        for r in st["inb"]:
            # an SSRC belongs to whoever its m-line carried when it was first seen
            kind, owner = self._owners.setdefault(r["ssrc"], (r["kind"], r["owner"] or ""))
            if not owner:
                self._owners.pop(r["ssrc"])
                continue
            if kind == "video":
                video[owner] = video.get(owner, 0) + r["frames"]
            else:
                audio[owner] = audio.get(owner, 0) + r["packets"]
        extra = {k: st.get(k) for k in ("w", "h", "fpsOut", "aob", "target", "qlr", "quality",
                                        "encoded")}
        sample = Sample(now, video, audio, int(st["sent"]), st["banner"] or "", extra)
        self.samples.append(sample)
        return sample

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            await self.context.close()


class SyntheticMember(Member):
    """``python -m sfu.client.run`` in a subprocess; its JSON lines read by a task it owns."""

    kind = "synthetic"

    def __init__(self, label: str, proc: asyncio.subprocess.Process) -> None:
        self.label = label
        self.proc = proc
        self.pid = None
        self.samples = []
        self.refused = None
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._joined = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def spawn(cls, label: str, url: str, token: str, room: str, seconds: float,
                    clip_dir: Path, clip_seconds: float) -> SyntheticMember:
        root = REPO
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sfu.client.run", "--url", url, "--token", token,
            "--room", room, "--seconds", str(seconds), "--interval", "1",
            "--clip-dir", str(clip_dir), "--clip-seconds", str(clip_seconds),
            "--join-timeout", "30", cwd=root, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(label, proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for line in self.proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self.events.append(event)
                kind = event.get("event")
                if kind == "joined":
                    self.pid = event["participant"]
                    self._joined.set()
                elif kind == "refused":
                    self.refused = f"{event.get('code')}: {event.get('message')}"
                    self._joined.set()
                elif kind == "stats":
                    self.samples.append(self._to_sample(event))
        finally:
            self._joined.set()

    def _to_sample(self, event: dict[str, Any]) -> Sample:
        video: dict[str, int] = {}
        audio: dict[str, int] = {}
        for t in event["tracks"]:
            if not t["participant"]:
                continue
            if t["kind"] == "video":
                video[t["participant"]] = video.get(t["participant"], 0) + t.get("frames", 0)
            else:
                audio[t["participant"]] = audio.get(t["participant"], 0) + t["packets"]
        extra = {k: event.get(k) for k in ("rendition_kbps", "remb_in", "remb_out", "switches")}
        return Sample(time.monotonic(), video, audio, int(event.get("frames_sent", 0)), "", extra)

    async def wait_joined(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._joined.wait(), within)
        if self.pid is None and self.refused is None:
            errors = [e for e in self.events if e.get("event") == "error"]
            raise TimeoutError(f"{self.label}: not joined within {within:.0f} s ({errors}; "
                               f"exit {self.proc.returncode})")

    async def sample(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self.proc.stderr is not None:
            self.stderr = await self.proc.stderr.read()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# -- CPU: ours (this process and its descendants, by kind) and the whole machine's ----------------
def _children(proc: Path = Path("/proc")) -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _group(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "gone"
    if b"chrom" in cmd:
        return "chromium"
    if b"sfu.client.run" in cmd:
        return "synthetic"
    if pid == os.getpid():
        return "server+driver"
    return "other"


Snapshot = tuple[float, dict[int, tuple[str, float]], float, float]


def cpu_snapshot() -> Snapshot:
    """(now, per process of ours (this one and its descendants): kind and CPU seconds so far,
    the machine's busy and total CPU seconds from /proc/stat)."""
    from bench.load_probe import CLK_TCK, read_cpu_rss

    tree = _children()
    ours: dict[int, tuple[str, float]] = {}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        got = read_cpu_rss(pid)
        if got is not None:
            ours[pid] = (_group(pid), got[0])
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return time.monotonic(), ours, (sum(fields) - idle) / CLK_TCK, sum(fields) / CLK_TCK


def cpu_use(a: Snapshot, b: Snapshot) -> str:
    """Cores used between two snapshots: ours by kind (a process gone by ``b`` is not counted
    for the interval), and the machine's busy share."""
    wall = max(b[0] - a[0], 1e-6)
    ours: dict[str, float] = {}
    for pid, (kind, cpu) in b[1].items():
        ours[kind] = ours.get(kind, 0.0) + (cpu - a[1].get(pid, (kind, 0.0))[1]) / wall
    busy = (b[2] - a[2]) / max(b[3] - a[3], 1e-6)
    cores = os.cpu_count() or 1
    return (f"CPU over {wall:.0f} s: ours {sum(ours.values()):.2f} cores ("
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(ours.items()))
            + f"); machine {busy * 100:.0f}% busy of {cores} cores; "
            f"load average {os.getloadavg()[0]:.1f}")


def chromium_args(base: Sequence[str], capture_fps: int | None) -> list[str]:
    """``base`` with the fake camera delivering ``capture_fps`` frames/s (Chromium's fake
    device option ``fps=``), or unchanged: the page's own constraints still apply."""
    if not capture_fps:
        return list(base)
    flag = "--use-fake-device-for-media-stream"
    return [a for a in base if a != flag] + [f"{flag}=fps={capture_fps}"]


def prepare_clips(clip_dir: Path, clip_seconds: float) -> None:
    """Encode (or find in the cache) what ``sfu.client.run`` publishes, once for all of them."""
    params = ClipParams(seconds=clip_seconds)
    load_clip(clip_dir, params)
    load_renditions(clip_dir, params, DEFAULT_RENDITIONS_KBPS)


@dataclass
class Room:
    """The scenario: who joins in which order, and everything measured."""

    url: str
    mint: Callable[[str, str], str]  # (sub, name) -> a staff token
    clip_dir: Path
    clip_seconds: float = CLIP_SECONDS
    room: str = "team"
    clinic: str = "demo"
    order: str = "ppssps"  # p: a Chromium page, s: a synthetic participant; the last fills the call
    # how long the measured call lasts: the synthetic participants stay that long after everyone
    # is in, however long the joins took (they are stopped at close())
    seconds: float = 60.0
    members: list[Member] = field(default_factory=list)
    start: float = 0.0  # when everyone was in
    join_seconds: float = 0.0  # how long the joins took, one after the other

    async def join_all(self, browser: Any, within: float = 45.0) -> None:
        began = time.monotonic()
        pages = synth = 0
        for kind in self.order:
            if kind == "p":
                pages += 1
                label = f"P{pages}"
                token = self.mint(f"page-{pages}", f"Page {pages}")
                url = f"{self.url}/c/{self.clinic}/rooms/{self.room}#token={token}"
                member: Member = await PageMember.open(browser, label, url)
            else:
                synth += 1
                label = f"S{synth}"
                member = await SyntheticMember.spawn(
                    label, self.url, self.mint(f"synthetic-{synth}", f"Synthetic {synth}"),
                    self.room, self.seconds + 300, self.clip_dir, self.clip_seconds)
            self.members.append(member)
            await member.wait_joined(within)  # type: ignore[attr-defined]
        self.start = time.monotonic()
        self.join_seconds = self.start - began

    def notes(self) -> list[str]:
        """What went wrong on the way, for a failure message: page errors and console lines,
        signaling a synthetic participant got besides media (quality, left, ended, error)."""
        out: list[str] = []
        for m in self.members:
            if isinstance(m, PageMember):
                out += [f"{m.label} error: {e}" for e in m.errors]
                out += [f"{m.label} console: {c}" for c in m.console[-5:]]
            elif isinstance(m, SyntheticMember):
                for e in m.events:
                    msg = e.get("message") or {}
                    kind = msg.get("type") if e.get("event") == "message" else e.get("event")
                    if kind in ("quality", "participant_left", "ended", "error", "refused"):
                        out.append(f"{m.label} at {e.get('t')}: {kind} "
                                   f"{json.dumps(msg or e)[:200]}")
                if m.stderr:
                    out.append(f"{m.label} stderr: {m.stderr.decode(errors='replace')[-300:]}")
        return out

    def labels(self) -> dict[str, str]:
        return {m.pid: m.label for m in self.members if m.pid}

    async def sample(self) -> dict[str, Sample | None]:
        joined = [m for m in self.members if m.pid is not None]
        samples = await asyncio.gather(*(m.sample() for m in joined))
        return {m.label: s for m, s in zip(joined, samples, strict=True)}

    async def close(self) -> None:
        for m in self.members:
            await m.close()


def at(samples: Sequence[Sample], t: float) -> Sample | None:
    """The last sample taken at or before ``t`` (monotonic)."""
    before = [s for s in samples if s.t <= t]
    return before[-1] if before else None


def rate(samples: Sequence[Sample], t0: float, t1: float, value: Callable[[Sample], float]
         ) -> float | None:
    """Per second growth of ``value`` between the samples at ``t0`` and ``t1``."""
    a, b = at(samples, t0), at(samples, t1)
    if a is None or b is None or b.t - a.t < 0.5:
        return None
    return (value(b) - value(a)) / (b.t - a.t)


def pair_rates(room: Room, t0: float, t1: float, kind: str = "video"
               ) -> dict[tuple[str, str], float | None]:
    """(receiver label, sender label) -> frames (video) or packets (audio) per second."""
    out: dict[tuple[str, str], float | None] = {}
    for receiver in room.members:
        for sender in room.members:
            if sender is receiver or sender.pid is None or receiver.pid is None:
                continue
            pid = sender.pid
            out[(receiver.label, sender.label)] = rate(
                receiver.samples, t0, t1,
                lambda s, pid=pid: float((s.video if kind == "video" else s.audio).get(pid, 0)))
    return out


def sent_rates(room: Room, t0: float, t1: float) -> dict[str, float | None]:
    return {m.label: rate(m.samples, t0, t1, lambda s: float(s.frames_sent))
            for m in room.members if m.pid}


def server_view(server: Any, labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per participant (label): downlink estimate, what is paused for it, its publisher cap."""
    now = time.monotonic()
    out: dict[str, dict[str, Any]] = {}
    for call in server.calls.by_key.values():
        caps = getattr(call.quality, "_caps", {})
        by_endpoint = {p.endpoint.id: labels.get(p.id, p.id) for p in call.members()}
        for p in call.members():
            link = p.link
            paused = sorted(by_endpoint.get(c.producer.owner, "?") for c in p.endpoint.consumers()
                            if c.producer.kind == "video" and c.paused)
            video = p.endpoint.producers.get("video")
            out[labels.get(p.id, p.id)] = {
                "down": link.down_kbps(now), "sent": link.sent_kbps, "loss": link.loss,
                "gcc": link.gcc.state if link.gcc is not None else None,
                "delay_based": link.gcc.delay_based_kbps if link.gcc is not None else None,
                "acked": link.gcc.acknowledged_kbps if link.gcc is not None else None,
                "gcc_loss": link.gcc.loss if link.gcc is not None else None,
                "constrained": link.constrained, "paused": paused, "paused_n": len(paused),
                "cap": caps.get(video.id) if video is not None else None,
                "up": link.up_kbps(now), "rtt": link.rtt}
    return out


def server_summary(views: Sequence[tuple[float, dict[str, dict[str, Any]]]], t0: float,
                   t1: float) -> list[str]:
    """Per receiver over [t0, t1], from per-second ``server_view``s: how many seconds some video
    was paused for it (and whose), its downlink estimate (min / median), the GCC delay-based
    estimate and acknowledged rate, the detector's states, the worst loss it reported."""
    out = []
    window = [(t, v) for t, v in views if t0 <= t <= t1]
    labels = sorted({k for _, v in window for k in v})
    for label in labels:
        rows = [v[label] for _, v in window if label in v]
        if not rows:
            continue
        paused: dict[str, int] = {}
        for r in rows:
            for who in r["paused"]:
                paused[who] = paused.get(who, 0) + 1
        downs = sorted(r["down"] for r in rows if r["down"] is not None)
        states: dict[str, int] = {}
        for r in rows:
            states[str(r["gcc"])] = states.get(str(r["gcc"]), 0) + 1

        def lo_med(key: str, rows: list[dict[str, Any]] = rows) -> str:
            vals = sorted(r[key] for r in rows if r[key] is not None)
            return f"{vals[0]:.0f}/{vals[len(vals) // 2]:.0f}" if vals else "-"
        out.append(
            f"{label}: {len(rows)} s; video paused for it (s): {paused or '-'}; down min/median "
            f"{f'{downs[0]:.0f}/{downs[len(downs) // 2]:.0f}' if downs else '-'} kbit/s, "
            f"delay-based {lo_med('delay_based')}, acknowledged {lo_med('acked')}, sent "
            f"{lo_med('sent')}; detector {states}; worst loss RR "
            f"{max(r['loss'] or 0 for r in rows) * 100:.1f}% feedback "
            f"{max(r['gcc_loss'] or 0 for r in rows) * 100:.1f}%; REMB cap on its video "
            f"{lo_med('cap')}; rtt max {max((r['rtt'] or 0) for r in rows) * 1000:.0f} ms")
    return out


def fmt(v: float | None, spec: str = "4.0f") -> str:
    return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))


def print_header(room: Room) -> None:
    labels = [m.label for m in room.members if m.pid]
    print(f"{'t':>3} {'recv':4} | " + " ".join(f"{x:>4}" for x in labels)
          + f" | {'sent':>4} {'a/s':>4} | {'down':>5} {'dly':>5} {'ack':>5} {'sent':>5} "
            f"{'RR%':>4} {'fb%':>4} {'gcc':>5} {'cap':>5} paused | banner", flush=True)


def print_second(room: Room, t: float, server: Any | None) -> None:
    """One line per receiver: the video fps it got from each sender over the last second."""
    now = time.monotonic()
    video = pair_rates(room, now - 1.5, now)
    audio = pair_rates(room, now - 1.5, now, "audio")
    sent = sent_rates(room, now - 1.5, now)
    view = server_view(server, room.labels()) if server is not None else {}
    labels = [m.label for m in room.members if m.pid]
    for m in room.members:
        if m.pid is None:
            continue
        cells = " ".join("   ." if x == m.label else fmt(video.get((m.label, x))) for x in labels)
        a = [v for (r, _), v in audio.items() if r == m.label and v is not None]
        srv = view.get(m.label, {})
        banner = m.samples[-1].banner if m.samples else ""
        print(f"{t:3.0f} {m.label:4} | {cells} | {fmt(sent.get(m.label))} "
              f"{fmt(min(a) if a else None)} | {fmt(srv.get('down'), '5.0f')} "
              f"{fmt(srv.get('delay_based'), '5.0f')} {fmt(srv.get('acked'), '5.0f')} "
              f"{fmt(srv.get('sent'), '5.0f')} {fmt((srv.get('loss') or 0) * 100, '4.1f')} "
              f"{fmt((srv.get('gcc_loss') or 0) * 100, '4.1f')} "
              f"{str(srv.get('gcc') or '-')[:5]:>5} {fmt(srv.get('cap'), '5.0f')} "
              f"{','.join(srv.get('paused', [])) or '-'} | {banner[:60]}", flush=True)


def print_summary(room: Room, window: float) -> dict[tuple[str, str], float | None]:
    end = max((s.t for m in room.members for s in m.samples), default=time.monotonic())
    video = pair_rates(room, end - window, end)
    sent = sent_rates(room, end - window, end)
    print(f"\nlast {window:.0f} s, video frames per second decoded (pages) / received (synthetic):")
    labels = [m.label for m in room.members if m.pid]
    print("recv \\ from " + " ".join(f"{x:>5}" for x in labels))
    for r in labels:
        print(f"{r:12} " + " ".join("    ." if r == x else fmt(video.get((r, x)), "5.1f")
                                    for x in labels))
    print(f"{'sent':12} " + " ".join(fmt(sent.get(x), "5.1f") for x in labels), flush=True)
    return video


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=3)
    ap.add_argument("--order", help="join order, e.g. ppssps (default: pages and synthetic "
                    "alternating, a synthetic one last)")
    ap.add_argument("--clip-dir", default="", help="default: SFU_CLIP_DIR or ~/.cache/sfu-clip")
    ap.add_argument("--json", help="write every sample here")
    ap.add_argument("--capture-fps", type=int, default=0,
                    help="fake camera frames/s in Chromium (default: Chromium's own, 30; the "
                         "page asks for 20)")
    ap.add_argument("--log", help="write the server's log (INFO) here")
    args = ap.parse_args()
    if args.log:
        import logging
        logging.basicConfig(filename=args.log, level=logging.INFO,
                            format="%(relativeCreated)7.0f %(name)s %(levelname)s %(message)s")
    order = args.order or "".join(
        ("p" if i < args.pages else "") + ("s" if i < args.synthetic else "")
        for i in range(max(args.pages, args.synthetic)))

    from playwright.async_api import async_playwright

    from bench.browser_call import CHROMIUM_ARGS, SECRET
    from sfu.auth import mint_token
    from sfu.client.media import default_clip_dir
    from sfu.service.config import default_config
    from sfu.service.server import Server

    clip_dir = Path(args.clip_dir) if args.clip_dir else default_clip_dir()
    await asyncio.to_thread(prepare_clips, clip_dir, CLIP_SECONDS)
    cfg = default_config()
    cfg = dataclasses.replace(cfg, auth=dataclasses.replace(cfg.auth, secret=SECRET))
    server = Server(cfg)
    await server.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.port}"

    def mint(sub: str, name: str) -> str:
        return mint_token(SECRET, sub=sub, role="staff", clinic="demo", name=name)

    room = Room(url, mint, clip_dir, order=order, seconds=args.seconds)
    print(f"server {url}; order {order}; capture fps {args.capture_fps or 'default'}; "
          f"load average {os.getloadavg()}", flush=True)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                              args=chromium_args(CHROMIUM_ARGS,
                                                                 args.capture_fps))
            try:
                await room.join_all(browser)
                refused = [(m.label, m.refused) for m in room.members if m.refused]
                print(f"joined in {room.join_seconds:.0f} s; refused: {refused}",
                      flush=True)
                print_header(room)
                cpu = [cpu_snapshot()]
                views = []
                while (t := time.monotonic() - room.start) < args.seconds:
                    tick = time.monotonic()
                    await room.sample()
                    views.append((time.monotonic(), server_view(server, room.labels())))
                    print_second(room, t, server)
                    if len(cpu) == 1 and t >= args.seconds - 20:
                        cpu.append(cpu_snapshot())
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
                cpu.append(cpu_snapshot())
                print_summary(room, 20.0)
                now = time.monotonic()
                print("\nthe server's view of each receiver, last 20 s:")
                print("\n".join(server_summary(views, now - 20, now)))
                print(cpu_use(cpu[0], cpu[-1]))
                print("last 20 s: " + cpu_use(cpu[-2], cpu[-1]))
            finally:
                await room.close()
                await browser.close()
                print("\n".join(room.notes()))
                print(f"load average {os.getloadavg()}")
    finally:
        await server.close()
    if args.json:
        text = json.dumps({m.label: [dataclasses.asdict(s) for s in m.samples]
                           for m in room.members}, default=str)
        await asyncio.to_thread(Path(args.json).write_text, text)


if __name__ == "__main__":
    asyncio.run(main())
