"""Per-packet cost of the transport-wide sequence number in ``Consumer.forward``.

    python -m bench.transport_cc [--packets 20000] [--rounds 31]

Three consumers forward the same pre-parsed video packets to a sink that drops them: the
forwarding code as it was before transport-cc (``Baseline``, its old ``_emit`` and ``ext_block`` copied here),
today's code for a peer without transport-cc, and today's code with it. Rounds are interleaved
and the medians printed, so the three are compared in one run on the same machine state.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time

from bench.sinks import NullSink
from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.forwarder import EXT_ABS_SEND_TIME, Consumer, OutStream, Producer
from sfu.transport.transportcc import SendHistory


def old_ext_block(elements: bytes) -> bytes:
    """``packets.ext_block`` as it was before transport-cc."""
    if not elements:
        return b""
    pad = -len(elements) & 3
    return b"\xbe\xde" + struct.pack("!H", (len(elements) + pad) >> 2) + elements + b"\x00" * pad


class Baseline(Consumer):
    """``Consumer`` with ``_emit`` as it was before transport-cc."""

    __slots__ = ()

    def _emit(self, packet: P.RtpPacket, anchor: tuple[int, int, int], now: float) -> None:
        out = self.out
        seq = (packet.seq + anchor[1]) & 0xFFFF
        ts = (packet.ts + anchor[2]) & 0xFFFFFFFF
        data = packet.data
        body = memoryview(data)[packet.payload_offset:]
        ext = old_ext_block(out.mid_element + packet.shared_ext)
        wire = P.build_rtp(data[0], packet.marker, self._pt, seq, ts, out.ssrc, ext, body)
        out.sink.send_rtp(wire)
        if ((seq - out.last_seq) & 0xFFFF) < 0x8000:
            out.last_seq = seq
            out.last_ts = ts
        out.last_sent_at = now
        out.packets += 1
        out.octets += len(wire)


def make(cls: type[Consumer], twcc: SendHistory | None) -> Consumer:
    producer = Producer(producer_id="p", owner="a", kind="video", clock_rate=90000, ssrc=1,
                        payload_type=97, feedback=NullSink(), rtcp_ssrc=9, counters=Counters(),
                        defer=lambda d, f: None, ext_ids={})
    out = OutStream(ssrc=2, mid="3", kind="video", sink=NullSink(), clock_rate=90000,
                    pt_map={97: 96}, twcc=twcc)
    return cls(producer, out, Counters())


def packets(n: int) -> list[P.RtpPacket]:
    body = b"\x10\x00" + bytes(1100)
    out = []
    for i in range(n):
        packet = P.parse_rtp(P.build_rtp(0, False, 97, i & 0xFFFF, 3000 * (i // 10), 1, b"", body))
        packet.keyframe = packet.frame_start = i == 0
        packet.shared_ext = P.ext_element(EXT_ABS_SEND_TIME, P.abs_send_time(i / 1000))
        out.append(packet)
    return out


def run(consumer: Consumer, batch: list[P.RtpPacket]) -> float:
    forward = consumer.forward
    start = time.process_time()  # CPU time: other processes on a shared machine count less
    for packet in batch:
        forward(packet, 1.0)
    return (time.process_time() - start) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    batch = packets(args.packets)
    variants = {"before (old _emit)": make(Baseline, None), "now, no transport-cc": make(Consumer, None),
                "now, transport-cc": make(Consumer, SendHistory())}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for consumer in variants.values():  # warm up: the first packet anchors
        run(consumer, batch[:100])
    for _ in range(args.rounds):
        for name, consumer in variants.items():
            times[name].append(run(consumer, batch[100:]))
    base = statistics.median(times["before (old _emit)"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:24s} {median * 1e9:7.0f} ns/packet  {(median - base) * 1e9:+5.0f} ns")


if __name__ == "__main__":
    main()
