"""Admission of the sixth participant, refusal with numbers, room_full, and the pre-call verdict."""

from __future__ import annotations

from sfu.bandwidth.admission import (
    BandwidthSettings,
    ParticipantEstimate,
    decide,
    graded_link,
    precall_verdict,
    precall_video,
)
from sfu.bandwidth.allocator import ReceiverLevel

SETTINGS = BandwidthSettings()


def people(
    n: int, up: float | None = 10000.0, down: float | None = 10000.0
) -> list[ParticipantEstimate]:
    return [ParticipantEstimate(f"p{i}", up, down) for i in range(n)]


def test_sixth_on_good_links_is_admitted_without_degrading_anyone() -> None:
    decision = decide(people(5), ParticipantEstimate("new", 5000.0, 8000.0), SETTINGS)
    assert decision.admit and decision.code == "ok"
    assert decision.degraded == []
    assert set(decision.levels.values()) == {ReceiverLevel.GOOD}
    assert "6 of 6" in decision.message


def test_sixth_with_unknown_estimates_is_admitted() -> None:
    decision = decide(people(5, None, None), ParticipantEstimate("new", None, None), SETTINGS)
    assert decision.admit


def test_sixth_behind_150_kbps_is_refused_with_the_numbers() -> None:
    decision = decide(people(5), ParticipantEstimate("new", 2000.0, 150.0), SETTINGS)
    assert not decision.admit and decision.code == "insufficient_bandwidth"
    assert "150 kbit/s" in decision.message and "180 kbit/s" in decision.message


def test_seventh_is_room_full() -> None:
    decision = decide(people(6), ParticipantEstimate("new", 10000.0, 10000.0), SETTINGS)
    assert not decision.admit and decision.code == "room_full"
    assert "6" in decision.message


def test_admission_reports_who_is_degraded() -> None:
    incumbents = people(5, down=4500.0)  # 4 x (1000 + 40) fits now; 5 x 1040 will not
    decision = decide(incumbents, ParticipantEstimate("new", 3000.0, 10000.0), SETTINGS)
    assert decision.admit
    assert sorted(decision.degraded) == [f"p{i}" for i in range(5)]
    assert "degraded" in decision.message and "p0 (degraded)" in decision.message


def test_newcomer_on_a_weak_link_gets_audio_only_when_acceptable() -> None:
    newcomer = ParticipantEstimate("new", 250.0, 250.0)
    decision = decide(people(5), newcomer, SETTINGS)
    assert decision.admit
    assert decision.levels["new"] is ReceiverLevel.AUDIO_ONLY
    assert decision.degraded == ["new"]


def test_audio_only_is_refused_when_not_acceptable() -> None:
    strict = BandwidthSettings(audio_only_acceptable=False)
    decision = decide(people(5), ParticipantEstimate("new", 2000.0, 250.0), strict)
    assert not decision.admit and decision.code == "insufficient_bandwidth"
    assert "new's downlink of 250 kbit/s" in decision.message
    assert "0 of 5 video streams at 150 kbit/s" in decision.message
    weak_uplink = decide(people(5), ParticipantEstimate("new", 185.0, 5000.0), strict)
    assert not weak_uplink.admit and "uplink of 185 kbit/s" in weak_uplink.message


def test_incumbent_that_would_lose_audio_refuses_the_newcomer() -> None:
    incumbents = [*people(4), ParticipantEstimate("weak", 1000.0, 190.0)]
    decision = decide(incumbents, ParticipantEstimate("new", 5000.0, 5000.0), SETTINGS)
    assert not decision.admit and decision.code == "insufficient_bandwidth"
    assert "weak would need 200 kbit/s for 5 audio streams" in decision.message
    assert "190 kbit/s" in decision.message
    five = decide(
        incumbents[:3] + [incumbents[4]], ParticipantEstimate("new", 5000.0, 5000.0), SETTINGS
    )
    assert five.admit  # with five, 4 x 40 = 160 kbit/s of audio still fits in 190


def test_first_participant_is_admitted() -> None:
    decision = decide([], ParticipantEstimate("solo", 500.0, 500.0), SETTINGS)
    assert decision.admit and decision.degraded == []


def test_precall_verdicts() -> None:
    verdict, message = precall_verdict(2000.0, 5000.0, 0.04, SETTINGS)
    assert verdict == "ok" and "2000 kbit/s" in message and "40 ms" in message
    verdict, message = precall_verdict(300.0, 5000.0, 0.04, SETTINGS)
    assert verdict == "warn" and "330 kbit/s" in message and "audio only" in message
    verdict, message = precall_verdict(2000.0, 5000.0, 0.8, SETTINGS)
    assert verdict == "warn" and "800 ms" in message
    verdict, message = precall_verdict(2000.0, 150.0, None, SETTINGS)
    assert verdict == "blocked" and "150 kbit/s" in message and "180 kbit/s" in message


def test_precall_grades_limits_not_lower_bounds() -> None:
    # under good_kbps (1000): video reduced, a warning
    verdict, message = precall_verdict(2000.0, 560.0, 0.02, SETTINGS)
    assert verdict == "warn" and "1000 kbit/s" in message and "reduced" in message
    assert precall_video(graded_link(2000.0, 560.0), SETTINGS) == "reduced"
    # an uplink that carried all the browser sent (380) without loss is no evidence: ok
    verdict, message = precall_verdict(380.0, 1300.0, 0.02, SETTINGS, up_at_least=True,
                                       down_at_least=True)
    assert verdict == "ok" and "Upload at least 380 kbit/s" in message
    assert precall_video(graded_link(380.0, 1300.0, up_at_least=True, down_at_least=True),
                         SETTINGS) == "full"
    # ... but the same figure as a limit (it lost packets) is graded
    verdict, _ = precall_verdict(380.0, 1300.0, 0.02, SETTINGS, down_at_least=True)
    assert verdict == "warn"
    verdict, _ = precall_verdict(90.0, 1300.0, None, SETTINGS, down_at_least=True)
    assert verdict == "blocked"
    assert precall_video(graded_link(90.0, 1300.0, down_at_least=True), SETTINGS) == "none"
    assert precall_video(250.0, SETTINGS) == "paused"
