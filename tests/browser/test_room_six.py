"""A full meeting room for a minute: three Chromium pages and three synthetic participants.

The pages are the staff meeting-room page (the project's web client); the synthetic participants
are ``python -m sfu.client.run`` subprocesses that publish pre-encoded renditions following REMB
and send REMB and transport-cc feedback like Chromium. Six is the call maximum, so the last one to
join is probed before it is admitted: on loopback it must be admitted.

After 60 s with everyone in, over the last 20 s:

* every page decodes every other participant's video, and every synthetic participant receives
  every other participant's video, at half the frame rate its sender sends or more and never less
  than 5 frames/s, and in each 5 s quarter of the window at a quarter of that or more (no freeze of
  several seconds hides behind a good average);
* audio flows from everyone to everyone throughout the minute (more packets in every 5 s window);
* no page shows a quality banner, no page logs an uncaught error;
* the pages send at most 15 frames/s: in a call of four or more the web client sends half-size
  pictures at 15 frames/s (``fitSentVideo`` in sfu/web/call.js).

Measured figures (per pair) are printed; ``python -m bench.browser_room`` prints the same scenario
second by second with the server's estimates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.browser_room import (
    PageMember,
    Room,
    Sample,
    cpu_snapshot,
    cpu_use,
    pair_rates,
    prepare_clips,
    sent_rates,
    server_summary,
    server_view,
)
from tests.conftest import make_config

pytestmark = [pytest.mark.browser, pytest.mark.timeout(360)]

CALL_SECONDS = 60.0
LAST_WINDOW = 20.0
CLIP_SECONDS = 5.0
# Floors per pair, in frames per second. A page publishes at most 20 frames/s (the web client asks
# for 20), a synthetic participant 30; what a receiver gets can only be less. Half of what the
# sender sends, averaged over 20 s, is video that plays; 5 frames/s is the least that reads as
# video rather than a slide show. A quarter of the floor in every 5 s (about 6 s of freeze at most
# in a 20 s window) keeps a long pause from hiding behind an average.
FLOOR_FRACTION = 0.5
FLOOR_FPS = 5.0
QUARTER_FRACTION = 0.25
AUDIO_STALL_S = 5.0  # Chromium's jitter buffer hides less; anything longer is audio gone


@pytest.fixture
async def room_server() -> AsyncIterator[Any]:
    """A server with the product's media settings (the shared fixture drops a participant after
    5 s without media, for tests about vanishing; here a busy machine must not cut a call)."""
    from sfu.service.server import Server

    srv = Server(make_config())
    await srv.start("127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{srv.port}"  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture(scope="session")
def room_clip_dir() -> Path:
    """The clip cache the subprocesses read (``--clip-dir``), shared with the netns tests."""
    import os

    from sfu.client.media import default_clip_dir

    return Path(os.environ.get("SFU_CLIP_DIR") or default_clip_dir())


async def test_three_pages_and_three_synthetic_participants_see_each_other_for_a_minute(
    room_server: Any, browser: Any, token: Callable[..., str], room_clip_dir: Path,
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sfu")
    await asyncio.to_thread(prepare_clips, room_clip_dir, CLIP_SECONDS)

    def mint(sub: str, name: str) -> str:
        return token(role="staff", sub=sub, name=name)

    room = Room(room_server.url, mint, room_clip_dir, clip_seconds=CLIP_SECONDS, order="pspsps",
                seconds=CALL_SECONDS)
    try:
        await room.join_all(browser, within=60.0)
        refused = [(m.label, m.refused) for m in room.members if m.refused]
        assert not refused, f"on loopback the sixth participant must be admitted: {refused}"
        assert len(room.labels()) == 6

        banners: list[str] = []
        views = []  # the server's view of every participant, each second
        cpu = [cpu_snapshot()]
        while (elapsed := time.monotonic() - room.start) < CALL_SECONDS:
            tick = time.monotonic()
            samples = await room.sample()
            views.append((time.monotonic(), server_view(room_server, room.labels())))
            if len(cpu) == 1 and elapsed >= CALL_SECONDS - LAST_WINDOW:
                cpu.append(cpu_snapshot())
            for label, sample in samples.items():
                if sample is not None and sample.banner:
                    banners.append(f"{label} at {elapsed:.0f} s: {sample.banner}")
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        end = time.monotonic()
        await room.sample()
        cpu.append(cpu_snapshot())
        machine = f"joins took {room.join_seconds:.0f} s; {cpu_use(cpu[0], cpu[-1])}\nlast 20 s: {cpu_use(cpu[-2], cpu[-1])}"
        server = "\n".join(server_summary(views, end - LAST_WINDOW, end))
        try:
            report = check(room, end)
        except AssertionError as exc:
            server_lines = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                            if r.levelno >= logging.WARNING or "quality" in r.getMessage()
                            or "left" in r.getMessage() or "failed" in r.getMessage()]
            notes = "\n".join(room.notes() + server_lines[-40:])
            raise AssertionError(f"{exc}\nthe server's view of each receiver, last 20 s:\n"
                                 f"{server}\n{machine}\n{notes}") from None
        print(f"\n{report}\n{server}\n{machine}")
        assert not banners, f"quality banners shown: {banners[:6]}\n{report}"
        for m in room.members:
            if isinstance(m, PageMember):
                assert not m.errors, f"{m.label}: {m.errors}"
                assert not m.rejoined, f"{m.label} lost its call: {m.console[-8:]}"
    finally:
        await room.close()


def longest_stall(samples: list[Sample], sender: str, start: float, end: float) -> float:
    """The longest time in [start, end] over which samples prove that audio from ``sender`` did
    not grow: from the first sample showing a count to the last one still showing it. Audio that
    grew between two samples far apart (a test loop starved of CPU) proves no stall; with one
    sample a second, a real stall of S seconds shows as at least S - 1."""
    longest, first_at, last_at, count = 0.0, None, None, None
    for s in samples:
        if s.t < start or s.t > end:
            continue
        packets = s.audio.get(sender, 0)
        if count is None or packets > count:
            first_at, count = s.t, packets
        last_at = s.t
        assert first_at is not None
        longest = max(longest, last_at - first_at)
    return longest


def check(room: Room, end: float) -> str:
    """Assert the video and audio floors; the per-pair figures as text."""
    t0 = end - LAST_WINDOW
    video = pair_rates(room, t0, end)
    sent = sent_rates(room, t0, end)
    quarters = [pair_rates(room, t0 + q * LAST_WINDOW / 4, t0 + (q + 1) * LAST_WINDOW / 4)
                for q in range(4)]
    labels = [m.label for m in room.members]
    lines = ["video frames/s in the last 20 s (row receives from column):",
             "      " + " ".join(f"{x:>5}" for x in labels)]
    for r in labels:
        lines.append(f"{r:5} " + " ".join(
            "    ." if r == x else f"{video.get((r, x)) or 0:5.1f}" for x in labels))
    lines.append("sent  " + " ".join(f"{sent.get(x) or 0:5.1f}" for x in labels))
    report = "\n".join(lines)

    # in a call of four or more the web client sends half-size pictures at 15 frames/s (each is a
    # small tile): without it three pages on two cores starved each other's decoders
    heavy = [f"{x}: {sent.get(x) or 0:.1f}" for x in labels if x.startswith("P")
             and (sent.get(x) or 0.0) > 16.0]
    assert not heavy, f"pages sending over 15 frames/s in a room of six: {heavy}\n{report}"

    short = []
    for (r, s), fps in video.items():
        floor = max(FLOOR_FPS, FLOOR_FRACTION * (sent.get(s) or 0.0))
        # a quarter without two samples of its own (a starved test loop) says nothing
        worst = min((v for q in quarters if (v := q.get((r, s))) is not None), default=0.0)
        if fps is None or fps < floor or worst < QUARTER_FRACTION * floor:
            short.append(f"{r} from {s}: {fps or 0:.1f} frames/s (floor {floor:.1f}), "
                         f"worst 5 s {worst:.1f}")
    assert not short, "video below the floor:\n" + "\n".join(short) + "\n" + report

    silent = []
    for receiver in room.members:
        for sender in room.members:
            if sender is receiver or sender.pid is None:
                continue
            stall = longest_stall(receiver.samples, sender.pid, room.start + 2.0, end)
            if stall > AUDIO_STALL_S:
                silent.append(f"{receiver.label} from {sender.label}: {stall:.1f} s")
    assert not silent, f"audio stopped for more than {AUDIO_STALL_S:.0f} s: {silent}\n{report}"
    return report
