"""Receive statistics of one incoming stream (RFC 3550 appendix A), for receiver reports."""

from __future__ import annotations

from sfu.transport.packets import ReportBlock


class ReceiveStats:
    __slots__ = ("clock_rate", "base_seq", "max_seq", "cycles", "received", "expected_prior",
                 "received_prior", "jitter_q4", "last_transit", "started", "lsr", "lsr_time")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter_q4 = 0
        self.last_transit: int | None = None
        self.started = False
        self.lsr = 0
        self.lsr_time = 0.0

    def add(self, seq: int, ts: int, arrival: float) -> None:
        if not self.started:
            self.started = True
            self.base_seq = seq
            self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
            elif delta == 0:
                return  # duplicate
        self.received += 1
        transit = int(arrival * self.clock_rate) - ts
        if self.last_transit is not None:
            d = abs(transit - self.last_transit)
            if d < self.clock_rate * 10:  # ignore timestamp jumps (source switches)
                self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4)
        self.last_transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    def report(self, ssrc: int, now: float) -> ReportBlock:
        """A report block; also advances the interval used for ``fraction_lost``."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = int((now - self.lsr_time) * 65536) if self.lsr else 0
        # DLSR is 32 bits of 1/65536 s: it stays at its largest 18.2 h after the last SR
        return ReportBlock(ssrc, fraction, self.lost, self.extended_max, self.jitter_q4 >> 4,
                           self.lsr, min(max(0, dlsr), 0xFFFFFFFF))

    def on_sender_report(self, ntp: int, now: float) -> None:
        self.lsr = (ntp >> 16) & 0xFFFFFFFF
        self.lsr_time = now
