"""A subscriber's transport that takes every packet and sends nothing: the forwarding path
measured without the socket (bench/counting.py, bench/transport_cc.py, bench/transport_cc_uplink.py)."""

from __future__ import annotations


class NullSink:
    def ready(self) -> bool:
        return True

    def send_rtp(self, data: bytes) -> None:
        return None

    def send_rtcp(self, data: bytes) -> None:
        return None
