"""Per-process media totals for the metrics, summed on scrape. A leaf: it imports nothing of ours.

The packet path counts nothing here: each producer and outgoing stream already keeps its own
packet and byte counts (which its RTCP needs anyway). The totals are the sum over the live ones
plus what those that have closed had counted. Rare events (drops, NACKs, PLIs) are plain integer
adds.
"""

from __future__ import annotations

from typing import Protocol


class Counted(Protocol):
    """A producer (incoming) or an outgoing stream: what the totals read of it."""

    @property
    def kind(self) -> str: ...

    @property
    def packets(self) -> int: ...

    @property
    def octets(self) -> int: ...


class Counters:
    __slots__ = ("_streams", "_producers", "_retired_out", "_retired_in", "dropped", "nacks",
                 "nacks_sent", "retransmitted", "retransmits_suppressed", "plis", "layer_switches")

    def __init__(self) -> None:
        self._streams: set[Counted] = set()
        self._producers: set[Counted] = set()
        self._retired_out = {"audio": [0, 0], "video": [0, 0]}  # kind -> [packets, bytes]
        self._retired_in = {"audio": 0, "video": 0}
        self.dropped: dict[str, int] = {}
        self.nacks = 0
        self.nacks_sent = 0
        self.retransmitted = 0
        self.retransmits_suppressed = 0  # NACKed packets not resent: just resent, or 3 times
        self.plis = 0
        self.layer_switches = 0  # simulcast consumers moved from one layer to another

    def track_stream(self, stream: Counted) -> None:
        """Count an outgoing stream's packets and bytes as forwarded."""
        self._streams.add(stream)

    def track_producer(self, producer: Counted) -> None:
        """Count a producer's packets as received."""
        self._producers.add(producer)

    def retire_stream(self, stream: Counted) -> None:
        """Keep what a closing outgoing stream counted; idempotent."""
        if stream in self._streams:
            self._streams.discard(stream)
            self._retired_out[stream.kind][0] += stream.packets
            self._retired_out[stream.kind][1] += stream.octets

    def retire_producer(self, producer: Counted) -> None:
        """Keep what a closing producer counted; idempotent."""
        if producer in self._producers:
            self._producers.discard(producer)
            self._retired_in[producer.kind] += producer.packets

    def forwarded(self) -> dict[str, tuple[int, int]]:
        """kind -> (packets, bytes) forwarded, by streams still open and closed ones."""
        totals = {kind: list(v) for kind, v in self._retired_out.items()}
        for s in self._streams:
            totals[s.kind][0] += s.packets
            totals[s.kind][1] += s.octets
        return {kind: (v[0], v[1]) for kind, v in totals.items()}

    @property
    def forwarded_packets(self) -> dict[str, int]:
        return {kind: packets for kind, (packets, _) in self.forwarded().items()}

    @property
    def received_packets(self) -> dict[str, int]:
        out = dict(self._retired_in)
        for p in self._producers:
            out[p.kind] += p.packets
        return out

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
