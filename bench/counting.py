"""What counting costs on the packet path.

    python -m bench.counting [--packets 20000] [--consumers 5] [--rounds 9]

The metrics read per-stream packet and byte counts on scrape (sfu/transport/counters.py
``Counters``); the packet path only bumps two integers per outgoing stream, which its sender
reports need anyway. This runs the real ``Producer``/``Consumer`` fan-out over a null sink (no
SRTP, no socket: the counting's share is as large as it can be) three ways per round: as shipped;
with no counting at all (the control); and calling prometheus-client per packet (what the
design avoids). It prints the median CPU time per forwarded packet of each and the shares, plus
the share of a real forwarded packet's cost (``--real-us``, from bench/forwarding.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from prometheus_client import CollectorRegistry, Counter

from bench.sinks import NullSink
from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.forwarder import Consumer, OutStream, Producer


class UncountedConsumer(Consumer):
    """``Consumer._emit`` without its two counting lines (the control of this benchmark)."""

    __slots__ = ()

    def _emit(self, packet: P.RtpPacket, anchor: tuple[int, int, int], now: float) -> None:
        out = self.out
        seq = (packet.seq + anchor[1]) & 0xFFFF
        ts = (packet.ts + anchor[2]) & 0xFFFFFFFF
        data = packet.data
        body = memoryview(data)[packet.payload_offset:]
        ext = P.ext_block(out.mid_element + packet.shared_ext)
        wire = P.build_rtp(data[0], packet.marker, self._pt, seq, ts, out.ssrc, ext, body)
        out.sink.send_rtp(wire)
        if ((seq - out.last_seq) & 0xFFFF) < 0x8000:
            out.last_seq = seq
            out.last_ts = ts
        out.last_sent_at = now


FORWARDED = Counter("bench_forwarded_packets", "per-packet counting", ["kind"],
                    registry=CollectorRegistry())
FORWARDED_BYTES = Counter("bench_forwarded_bytes", "per-packet counting", ["kind"],
                          registry=CollectorRegistry())


class LibraryCountedConsumer(Consumer):
    """Counting through prometheus-client on every packet, as the design does not."""

    __slots__ = ()

    def _emit(self, packet: P.RtpPacket, anchor: tuple[int, int, int], now: float) -> None:
        super()._emit(packet, anchor, now)
        FORWARDED.labels(self.producer.kind).inc()
        FORWARDED_BYTES.labels(self.producer.kind).inc(len(packet.data))


def make_packets(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        key = i % 75 == 0
        body = (b"\x10" if i % 3 == 0 else b"\x00") + (b"\x00" if key else b"\x01") + bytes(1100)
        ext = P.ext_block(P.ext_element(1, b"1") + P.ext_element(3, b"\x00\x00\x01"))
        out.append(P.build_rtp(0, i % 3 == 2, 97, i & 0xFFFF, 3000 * (i // 3), 1111, ext, body))
    return out


def run(cls: type[Consumer], datagrams: list[bytes], consumers: int) -> float:
    counters = Counters()
    producer = Producer(producer_id="p", owner="a", kind="video", clock_rate=90000, ssrc=1111,
                        payload_type=97, feedback=NullSink(), rtcp_ssrc=1, counters=counters,
                        defer=lambda d, f: None, ext_ids={"mid": 1, "abs_send_time": 3})
    for i in range(consumers):
        cls(producer, OutStream(ssrc=5000 + i, mid=str(i + 2), kind="video", sink=NullSink(),
                                clock_rate=90000, pt_map={97: 97}), counters)
    start = time.process_time()
    for i, data in enumerate(datagrams):
        producer.on_rtp(P.parse_rtp(data), i / 1000)
    return (time.process_time() - start) / (len(datagrams) * consumers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--consumers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--real-us", type=float, default=25.0,
                        help="CPU per forwarded packet of a real run (bench/forwarding.py 1x6)")
    args = parser.parse_args(argv)
    datagrams = make_packets(args.packets)
    shipped, control, library = [], [], []
    for _ in range(args.rounds):  # interleaved, so that machine noise hits all alike
        shipped.append(run(Consumer, datagrams, args.consumers))
        control.append(run(UncountedConsumer, datagrams, args.consumers))
        library.append(run(LibraryCountedConsumer, datagrams, args.consumers))
    s, c, lib = (statistics.median(x) for x in (shipped, control, library))
    print(f"forwarding core, {args.consumers} consumers, null sink, median of {args.rounds} rounds")
    print(f"  no counting (control)          {c * 1e6:6.2f} us per forwarded packet")
    print(f"  as shipped (per-stream ints)   {s * 1e6:6.2f} us  {100 * (s - c) / c:+6.1f} % of the core"
          f"  {100 * (s - c) / 1e-6 / args.real_us:+5.2f} % of a real packet ({args.real_us:.0f} us)")
    print(f"  prometheus-client per packet   {lib * 1e6:6.2f} us  {100 * (lib - c) / c:+6.1f} % of the core"
          f"  {100 * (lib - c) / 1e-6 / args.real_us:+5.2f} % of a real packet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
