"""Per-packet cost of transport-cc on the uplink in ``Endpoint._on_rtp``.

    python -m bench.transport_cc_uplink [--packets 4000] [--rounds 101] [--consumers 5]

The same video packets (mid, abs-send-time and a transport-wide sequence number) go through one
endpoint's receive path (parse, the producer, ``--consumers`` consumers to a sink that drops
them) with transport-cc on the uplink off (as before: the number is ignored), on as the packet
path sees it (the number noted raw), and on with one feedback round per 10 packets (about what
1 Mbit/s of video costs every 100 ms; the rounds run off the packet path, on the endpoint's timer).
Rounds are interleaved and the medians printed, so both are compared in one run on the same
machine state; the cost of one packet is that of a received packet, not of a forwarded one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench import sinks
from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.endpoint import Endpoint, EndpointListener
from sfu.transport.forwarder import Consumer, OutStream, Producer
from sfu.transport.settings import MediaSettings
from sfu.transport.transportcc import ReceiveHistory

SSRC = 1234


class NullSink(sinks.NullSink):
    def reset(self) -> None:
        return None


def make(consumers: int, transport_cc: bool) -> Endpoint:
    endpoint = Endpoint("bench", MediaSettings(), EndpointListener(), Counters())
    endpoint.peer.wire = NullSink()  # type: ignore[assignment]
    producer = Producer(producer_id="p", owner="a", kind="video", clock_rate=90000, ssrc=SSRC,
                        payload_type=97, feedback=NullSink(), rtcp_ssrc=9, counters=Counters(),
                        defer=lambda d, f: None, ext_ids={"mid": 1, "abs_send_time": 3})
    endpoint.producers["video"] = producer
    endpoint._by_ssrc[SSRC] = producer
    for i in range(consumers):
        out = OutStream(ssrc=100 + i, mid=str(i), kind="video", sink=NullSink(), clock_rate=90000,
                        pt_map={97: 96})
        Consumer(producer, out, Counters())
    if transport_cc:  # as _apply_transport_cc_in does, without its timer task
        endpoint._twcc_in_id = 5
        endpoint.twcc_in = ReceiveHistory(9)
    return endpoint


def packets(n: int) -> list[bytes]:
    body = b"\x10\x00" + bytes(1100)
    out = []
    for i in range(n):
        ext = P.ext_block(P.ext_element(1, b"0") + P.ext_element(3, P.abs_send_time(i / 1000))
                          + P.ext_element(5, (i & 0xFFFF).to_bytes(2, "big")))
        first = b"\x10\x00\x10" if i == 0 else body  # a keyframe first: the consumers anchor
        out.append(P.build_rtp(0, False, 97, i & 0xFFFF, 3000 * (i // 10), SSRC, ext, first))
    return out


def run(endpoint: Endpoint, batch: list[bytes], start_at: float, rounds: bool) -> float:
    on_rtp = endpoint._on_rtp
    feedback = endpoint.send_transport_feedback if rounds else None
    begin = time.perf_counter()
    now = start_at
    for i, data in enumerate(batch):
        now += 0.001
        on_rtp(data, now)
        if feedback is not None and i % 10 == 9:
            feedback()
    return (time.perf_counter() - begin) / len(batch)


async def measure(args: argparse.Namespace) -> None:
    batch = packets(args.packets)
    variants = {"uplink transport-cc off": (make(args.consumers, False), False),
                "on, packet path only": (make(args.consumers, True), False),
                "on, with feedback": (make(args.consumers, True), True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for endpoint, rounds in variants.values():
        run(endpoint, batch[:100], 0.0, rounds)  # warm up and anchor
    for r in range(args.rounds):
        for name, (endpoint, rounds) in variants.items():
            times[name].append(run(endpoint, batch[100:], 1.0 + 100 * r, rounds))
            endpoint._twcc_seqs.clear()  # the packet path only: nothing drains it
            endpoint._twcc_times.clear()
    base = statistics.median(times["uplink transport-cc off"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:24s} {median * 1e9:7.0f} ns/packet  {(median - base) * 1e9:+5.0f} ns")
    for endpoint, _ in variants.values():
        await endpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=4000)  # < ARRIVALS_PENDING_MAX
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--consumers", type=int, default=5)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
