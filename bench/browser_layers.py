"""What a Chromium page of the web client decodes of each participant, five times a second.

Used by tests/netns/test_simulcast_browser.py to tell a layer switch (frameWidth) from a freeze.
:data:`MONITOR_JS` starts, inside the page, a sampler that reads ``getStats`` every 200 ms and keeps
one row per sample (the test's own loop, starved of CPU on a busy machine, cannot time a 1 s freeze;
the page's timer reads what the page sees when it sees it). :data:`DRAIN_JS` hands the rows over
and forgets them. Per sender (the participant the ``tracks`` message says an m-line carries):

* video: frames decoded, key frames decoded, Chromium's freeze count and total freeze duration
  (a freeze: a frame shown more than max(3 x the mean frame duration, mean + 150 ms) after the one
  before), packets received, and the frame width and height of the stream that last received;
* audio: packets received;
* the page's ``video_layers`` (``sfuCall.layers``) and ``publish_layers`` (``sfuCall.sendLayers``),
  each only when it changed;
* what it sends: per layer (rid, "-" without simulcast) width, frames sent, Chromium's quality
  limitation reason (``cpu`` or ``bandwidth`` explain a top layer narrower than 640), bytes sent.

The functions below turn rows into per-sender series and answer: how long did a counter stop
growing inside a window, what changed over it, and from when on a width held (pure, tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SAMPLE_MS = 200

MONITOR_JS = """() => {
  if (window.__sfuMonitor) return false;
  const mon = {rows: [], errors: 0, lastError: null, stopped: false};
  window.__sfuMonitor = mon;
  let lastLayers = null;
  let lastSending = null;
  const tick = async () => {
    if (mon.stopped) return;
    const call = window.sfuCall;
    try {
      if (call && call.pc) {
        const stats = await call.pc.getStats();
        const row = {t: Date.now(), self: call.selfId, state: call.pc.connectionState, v: {}, a: {}, o: {}};
        stats.forEach((r) => {
          if (r.type === "outbound-rtp" && r.kind === "video") {
            row.o[r.rid || "-"] = [r.frameWidth || 0, r.framesSent || 0, r.qualityLimitationReason || "",
                                    r.bytesSent || 0];
          }
          if (r.type !== "inbound-rtp") return;
          const info = call.tracks.get(String(r.mid));
          const owner = info ? info.participant : null;
          if (!owner) return;
          if (r.kind === "audio") {
            row.a[owner] = (row.a[owner] || 0) + (r.packetsReceived || 0);
            return;
          }
          const v = row.v[owner] || (row.v[owner] = {fd: 0, kf: 0, fc: 0, fz: 0, pk: 0, w: 0, h: 0, last: -1});
          v.fd += r.framesDecoded || 0;
          v.kf += r.keyFramesDecoded || 0;
          v.fc += r.freezeCount || 0;
          v.fz += r.totalFreezesDuration || 0;
          v.pk += r.packetsReceived || 0;
          const last = r.lastPacketReceivedTimestamp || 0;
          if (last >= v.last) { v.last = last; v.w = r.frameWidth || 0; v.h = r.frameHeight || 0; }
        });
        const sending = JSON.stringify(call.sendLayers || null);
        if (sending !== lastSending) { row.pl = JSON.parse(sending); lastSending = sending; }
        const layers = JSON.stringify(call.layers || {});
        if (layers !== lastLayers) { row.layers = JSON.parse(layers); lastLayers = layers; }
        mon.rows.push(row);
      }
    } catch (error) {
      mon.errors += 1;
      mon.lastError = String(error);
    }
    setTimeout(tick, SAMPLE_MS);
  };
  tick();
  return true;
}""".replace("SAMPLE_MS", str(SAMPLE_MS))

DRAIN_JS = "() => window.__sfuMonitor ? window.__sfuMonitor.rows.splice(0) : []"

STOP_JS = "() => { if (window.__sfuMonitor) window.__sfuMonitor.stopped = true; }"


@dataclass(frozen=True)
class VideoPoint:
    """One sample of what a page decoded of one sender's video (counters are cumulative)."""

    t: float  # seconds (wall clock)
    frames: int
    keyframes: int
    freezes: int
    freeze_s: float
    packets: int
    width: int
    height: int


@dataclass(frozen=True)
class CountPoint:
    t: float
    count: int


def video_series(rows: Sequence[dict[str, Any]], sender: str) -> list[VideoPoint]:
    """What the rows say of ``sender``'s video, in time order (rows without it left out)."""
    out = []
    for row in rows:
        v = (row.get("v") or {}).get(sender)
        if v is None:
            continue
        out.append(VideoPoint(row["t"] / 1000.0, int(v["fd"]), int(v["kf"]), int(v["fc"]),
                              float(v["fz"]), int(v["pk"]), int(v["w"]), int(v["h"])))
    return out


def audio_series(rows: Sequence[dict[str, Any]], sender: str) -> list[CountPoint]:
    return [CountPoint(row["t"] / 1000.0, int(row["a"][sender]))
            for row in rows if sender in (row.get("a") or {})]


def longest_stall(points: Sequence[Any], t0: float, t1: float,
                  count: Callable[[Any], int] = lambda p: int(p.frames)) -> float:
    """The longest time inside [t0, t1] over which ``count`` did not grow, as sampled, taken
    long: from the sample where it last grew (or the window's first sample) to the sample where
    it grows again (so a counter growing at every sample shows one sampling period, 0.2 s, and a
    real stall of S seconds shows as S to S + 0.2). A stall still running at the window's end
    counts up to its last sample, and a window that ends long after its last sample counts that
    silence too; a window with no sample, or only one, is a stall of the whole window (nothing
    seen is nothing decoded)."""
    window = [p for p in points if t0 <= p.t <= t1]
    if len(window) < 2:
        return t1 - t0
    longest = 0.0
    since, value = window[0].t, count(window[0])
    for p in window[1:]:
        c = count(p)
        if c > value:
            longest = max(longest, p.t - since)
            since, value = p.t, c
    longest = max(longest, window[-1].t - since)
    tail = t1 - window[-1].t
    return max(longest, tail if tail > 2 * SAMPLE_MS / 1000 else 0.0)


def delta(points: Sequence[VideoPoint], t0: float, t1: float,
          value: Callable[[VideoPoint], float]) -> float:
    """How much ``value`` grew between the first and the last sample inside [t0, t1]."""
    window = [p for p in points if t0 <= p.t <= t1]
    if not window:
        return 0.0
    return value(window[-1]) - value(window[0])


def held_from(points: Sequence[VideoPoint], t0: float, t1: float,
              ok: Callable[[VideoPoint], bool]) -> float | None:
    """The time of the first sample in [t0, t1] from which every later sample of the window
    satisfies ``ok`` (None when the last one does not)."""
    window = [p for p in points if t0 <= p.t <= t1]
    start = None
    for p in window:
        if ok(p):
            if start is None:
                start = p.t
        else:
            start = None
    return start


def widths(points: Sequence[VideoPoint], t0: float, t1: float) -> dict[int, int]:
    """How many samples inside [t0, t1] showed each frame width."""
    out: dict[int, int] = {}
    for p in points:
        if t0 <= p.t <= t1:
            out[p.width] = out.get(p.width, 0) + 1
    return out


def freeze_bound(points: Sequence[VideoPoint], t0: float, t1: float) -> tuple[int, float]:
    """Chromium's freezes inside [t0, t1]: (how many began, their total seconds). The longest
    lies between total / count and total."""
    return (int(delta(points, t0, t1, lambda p: p.freezes)),
            round(delta(points, t0, t1, lambda p: p.freeze_s), 3))


def layer_kbps(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per layer a page sent (rid): its mean rate in kbit/s over the seconds it was sending
    (RTP payload, from bytesSent), 0 for a layer that never sent."""
    out: dict[str, float] = {}
    spans: dict[str, list[tuple[float, int]]] = {}
    for row in rows:
        for rid, values in (row.get("o") or {}).items():
            spans.setdefault(rid, []).append((row["t"] / 1000.0, int(values[3])))
    for rid, points in spans.items():
        octets = seconds = 0.0
        for (t0, b0), (t1, b1) in zip(points, points[1:], strict=False):
            if b1 > b0:
                octets += b1 - b0
                seconds += t1 - t0
        out[rid] = round(octets * 8 / 1000 / seconds, 1) if seconds > 0 else 0.0
    return out
