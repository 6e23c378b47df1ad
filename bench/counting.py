"""What counting costs on the packet path: the forwarding core with and without its counters.

    python -m bench.counting [--packets 20000] [--consumers 5] [--rounds 9]

Metrics are plain integer adds per stream on the packet path, read on scrape (sfu/metrics.py).
This runs the real ``Producer``/``Consumer`` fan-out over a null sink (so the socket and SRTP,
which dominate a real run, are left out and the counting's share is as large as it can be) twice
per round: as shipped, and with a consumer whose ``forward`` is the same minus the counting.
It prints the median CPU time per forwarded packet of each and the ratio. The target: under 5 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from sfu.transport import packets as P
from sfu.transport.forwarder import Consumer, Counters, OutStream, Producer


class NullSink:
    def ready(self) -> bool:
        return True

    def send_rtp(self, data: bytes) -> None:
        return None

    def send_rtcp(self, data: bytes) -> None:
        return None


class UncountedConsumer(Consumer):
    """``Consumer.forward`` without its three counting lines (the control of this benchmark)."""

    __slots__ = ()

    def forward(self, packet: P.RtpPacket, now: float) -> None:
        if self.paused:
            return
        anchor = self.anchor
        if anchor is None or self.need_keyframe:
            if not self.out.sink.ready():
                return
            if self._video and not (packet.keyframe and packet.frame_start):
                return
            anchor = self._anchor(packet, now)
        elif (packet.seq - anchor[0]) & 0xFFFF >= 0x8000:
            return
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
        out.packets += 1
        out.octets += len(wire)


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
                        rtx_ssrc=None, payload_type=97, rtx_payload_type=None, feedback=NullSink(),
                        rtcp_ssrc=1, counters=counters, defer=lambda d, f: None,
                        ext_ids={"mid": 1, "abs_send_time": 3})
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
    args = parser.parse_args(argv)
    datagrams = make_packets(args.packets)
    counted, uncounted = [], []
    for _ in range(args.rounds):  # interleaved, so that machine noise hits both alike
        counted.append(run(Consumer, datagrams, args.consumers))
        uncounted.append(run(UncountedConsumer, datagrams, args.consumers))
    c, u = statistics.median(counted), statistics.median(uncounted)
    print(f"forwarding core, {args.consumers} consumers, null sink, median of {args.rounds} rounds")
    print(f"  with counting     {c * 1e6:6.2f} us per forwarded packet")
    print(f"  without counting  {u * 1e6:6.2f} us per forwarded packet")
    print(f"  counting costs    {100 * (c - u) / u:+6.1f} % of the core alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
