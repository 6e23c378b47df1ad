"""A bounded cache of received packets per stream, indexed by sequence number (for NACKs)."""

from __future__ import annotations

from sfu.transport.packets import RtpPacket


class PacketCache:
    """Ring buffer of the last ``size`` packets of one stream; a packet is stored once."""

    __slots__ = ("_size", "_slots")

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._slots: list[RtpPacket | None] = [None] * size

    def add(self, packet: RtpPacket) -> None:
        self._slots[packet.seq % self._size] = packet

    def get(self, seq: int) -> RtpPacket | None:
        packet = self._slots[seq % self._size]
        if packet is not None and packet.seq == seq:
            return packet
        return None

    def clear(self) -> None:
        self._slots = [None] * self._size
