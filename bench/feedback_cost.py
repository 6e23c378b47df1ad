"""Per-packet cost of the transport-cc feedback path on the server, stage by stage.

    python -m bench.feedback_cost [--seconds 20] [--rounds 9] [--rate 700]

A subscriber of a 1x6 room receives about 700 packets/s (five publishers' audio and video) and
reports them every 100 ms (``transportcc.ReceiveHistory``, the builder the server and the synthetic client use, at Chromium's
cadence). This replays ``--seconds`` of such feedback through the server's code, cumulatively:

* ``parse``: ``packets.parse_rtcp`` of each feedback packet;
* ``+ match``: ``SendHistory.match`` against the send history;
* ``+ link``: ``Link.on_transport_feedback``, i.e. the GCC estimator and the link's bookkeeping.

Each stage is timed in process CPU time (``process_time_ns``, so that other processes on a
shared machine count less) around the whole replay, less a replay that only fills the send
history; no profiler. Rounds are interleaved and the medians printed in nanoseconds per reported
packet; the difference between two lines is what that stage adds. Compare with ``python -m bench.transport_cc`` (the send side)
and with the forwarded packet's total (``python -m bench.forwarding``, tens of microseconds).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from sfu.calls.link import Link
from sfu.transport import packets as P
from sfu.transport.transportcc import ReceiveHistory, SendHistory


def workload(seconds: float, rate: float, seed: int = 1) -> tuple[list[tuple[float, int]], list[tuple[float, bytes]]]:
    """(send time, size) of every packet sent and (arrival time, feedback bytes) of every
    feedback packet: video frames at 30/s in bursts, audio every 20 ms, 1-3 ms of transit."""
    rng = random.Random(seed)
    audio_pps = 5 * 50
    video_pps = max(rate - audio_pps, 30)
    sends: list[tuple[float, int]] = []
    t = 0.0
    frame = 1 / 30
    per_frame = video_pps * frame
    while t < seconds:
        for k in range(int(per_frame + rng.random())):
            sends.append((t + k * 0.0002, 1100))
        t += frame
    sends += [(i * 0.02 / 5, 120) for i in range(int(seconds * audio_pps))]
    sends.sort()
    builder = ReceiveHistory(0x1234)
    feedbacks: list[tuple[float, bytes]] = []
    next_fb = 0.1
    for seq, (sent, _) in enumerate(sends, start=1):
        arrival = sent + 0.001 + rng.random() * 0.002
        while arrival >= next_fb:
            feedbacks += [(next_fb, fb) for fb in builder.feedback(0x5678)]
            next_fb += 0.1
        if rng.random() < 0.001:
            continue  # lost
        builder.add(seq & 0xFFFF, 1000.0 + arrival)
    return sends, feedbacks


def replay(stage: str, sends: list[tuple[float, int]], feedbacks: list[tuple[float, bytes]]) -> tuple[int, int]:
    """Run one stage over the whole workload; (CPU nanoseconds of this process, packets
    reported). The ``record`` stage only fills the send history: the others subtract it."""
    history = SendHistory()
    link = Link()
    sink: Callable[..., None] = link.on_transport_feedback
    parse = P.parse_rtcp
    record = history.record
    feedback_type = P.TransportFeedback
    reported = sum(len(m.deltas) for _, data in feedbacks for m in parse(data)
                   if isinstance(m, feedback_type))
    i = 0
    n = len(sends)
    start = time.process_time_ns()  # CPU time: what other processes do to the clock is left out
    for at, data in feedbacks:
        while i < n and sends[i][0] <= at:  # fill the history up to the feedback's time
            record(sends[i][1], sends[i][0])
            i += 1
        if stage == "record":
            continue
        messages = parse(data)
        if stage != "parse":
            for msg in messages:
                if isinstance(msg, feedback_type):
                    results = history.match(msg)
                    if stage == "link" and results:
                        sink(results, at)
    return time.process_time_ns() - start, reported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--rate", type=float, default=700.0, help="packets/s sent to the subscriber")
    args = parser.parse_args()
    sends, feedbacks = workload(args.seconds, args.rate)
    stages = {"parse": "parse", "+ match": "match", "+ link (GCC)": "link"}
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.rounds):
        base, _ = replay("record", sends, feedbacks)
        for name, stage in stages.items():
            ns, reported = replay(stage, sends, feedbacks)
            times[name].append((ns - base) / reported)
    print(f"{len(feedbacks)} feedback packets, {len(sends)} packets sent, {args.rounds} rounds")
    previous = 0.0
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:14s} {median:7.0f} ns/packet reported  (+{median - previous:.0f})")
        previous = median


if __name__ == "__main__":
    main()
