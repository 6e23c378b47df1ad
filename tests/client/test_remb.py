"""The synthetic receiver estimates what it receives and sends REMB like Chromium."""

from __future__ import annotations

import pytest

from sfu.client.client import Client
from sfu.client.remb import ReceiveEstimate, RembSettings
from tests.integration.helpers import close_all, join_all, receives_everyone, wait_for

pytestmark = pytest.mark.timeout(60)

KBIT = 1000


def feed(est: ReceiveEstimate, seconds: int, kbps: float, *, loss: float = 0.0,
         transit_ms: float | None = None, t0: float = 0.0) -> list[int]:
    """Receive at ``kbps`` (100 packets a second, ``loss`` of them lost) for ``seconds``."""
    out = []
    last = est._last
    total, expected, received = (last[1], last[2], last[3]) if last else (0, 0, 0)
    for i in range(1, seconds + 1):
        total += int(kbps * KBIT / 8)
        expected += 100
        received += 100 - round(100 * loss)
        out.append(est.update(t0 + i, total, expected, received, transit_ms))
    return out


def test_starts_at_300_and_grows_8_percent_a_second_while_all_is_well() -> None:
    est = ReceiveEstimate(RembSettings(init_after=1e9))
    assert est.update(0.0, 0, 0, 0) == 300 * KBIT
    values = feed(est, 5, 2000)
    assert values[0] == pytest.approx(324 * KBIT, rel=0.01)
    assert values[-1] == pytest.approx(300 * KBIT * 1.08 ** 5, rel=0.01)


def test_never_grows_past_one_and_a_half_times_what_arrives_and_holds_there() -> None:
    est = ReceiveEstimate(RembSettings(start_bps=100_000, init_after=1e9))
    est.update(0.0, 0, 0, 0)
    assert feed(est, 20, 100)[-1] == 160 * KBIT  # 1.5 x 100 + 10
    assert feed(est, 3, 20, t0=20)[-1] == 160 * KBIT  # less arrives: held, not lowered


def test_after_five_seconds_it_starts_from_the_measured_rate() -> None:
    est = ReceiveEstimate()
    est.update(0.0, 0, 0, 0)
    values = feed(est, 6, 1000)
    assert values[4] < 500 * KBIT  # 5 s after the first bytes arrived (at t = 1): 1000, grown
    assert values[5] == pytest.approx(1080 * KBIT, rel=0.01)


def test_loss_over_ten_percent_cuts_it_and_small_loss_holds_it() -> None:
    est = ReceiveEstimate(RembSettings(init_after=1e9))
    est.update(0.0, 0, 0, 0)
    grown = feed(est, 3, 1000)[-1]
    assert feed(est, 1, 1000, loss=0.05, t0=3)[-1] == grown
    assert feed(est, 1, 300, loss=0.2, t0=4)[-1] == pytest.approx(300 * KBIT * 0.9, rel=0.01)
    assert est.loss == pytest.approx(0.2)


def test_a_rising_delay_backs_it_off_to_085_of_the_incoming_rate() -> None:
    est = ReceiveEstimate(RembSettings(init_after=1e9))
    est.update(0.0, 0, 0, 0, 10.0)
    feed(est, 3, 1000, transit_ms=10.0)
    assert not est.overuse
    assert feed(est, 1, 200, transit_ms=80.0, t0=3)[-1] == pytest.approx(170 * KBIT, rel=0.01)
    assert est.overuse and est.delay_ms == pytest.approx(70.0)


async def test_the_server_receives_rembs_that_grow_from_300(server, token, clip) -> None:
    clients = await join_all(server.url, [token(sub=f"r{i}") for i in range(2)], clip,
                             {"room": "team"})
    quiet = Client(server.url, token(sub="quiet"), clip=clip, send_remb=False)
    heard: dict[str, list[int]] = {}
    try:
        await wait_for(receives_everyone(clients), timeout=15)
        await quiet.join({"room": "team"})
        call = next(iter(server.calls.by_key.values()))
        for pid, participant in call.participants.items():
            participant.endpoint.listen_remb(
                lambda bps, now, pid=pid: heard.setdefault(pid, []).append(bps))
        await wait_for(lambda: all(len(heard.get(c.participant or "", [])) >= 3
                                   for c in clients), timeout=10)
        for c in clients:
            values = heard[c.participant or ""]
            assert 250 * KBIT <= values[0] <= 3000 * KBIT
            assert c.remb_sent >= 3 and c.remb_bps is not None
            link = call.participants[c.participant or ""].link
            assert link.downlink._remb is not None
        assert quiet.participant not in heard and quiet.remb_sent == 0
    finally:
        await close_all([*clients, quiet])
