"""The pre-call test's uplink probe with fake media and a fake clock: when the filler is asked
for, what is counted and acknowledged, and what it measures."""

from __future__ import annotations

import pytest

from sfu.bandwidth import BandwidthSettings
from sfu.calls.precall import UPLOAD_GRACE_S, UPLOAD_S, PrecallTest
from tests.calls.fakes import Endpoints, FakeClock, RecordingClient


def make_test() -> tuple[PrecallTest, RecordingClient, FakeClock, Endpoints]:
    client, clock, endpoints = RecordingClient(), FakeClock(), Endpoints()
    test = PrecallTest("pc_1", client=client, new_endpoint=endpoints, settings=BandwidthSettings(),
                       seconds=5.0, monotonic=clock)
    return test, client, clock, endpoints


def test_filler_is_asked_for_at_the_first_media_and_counted_only_in_its_window() -> None:
    test, client, clock, endpoints = make_test()
    endpoint = endpoints.made["pc_1"]
    assert endpoint.retransmit is False  # the echo answers no NACKs
    assert test._step_upload(clock()) is False and "precall_upload" not in client.kinds()
    test.on_upload(6000)  # not asked for yet: not counted
    assert test.upload_bytes == 0
    endpoint.got_media = True
    assert test._step_upload(clock()) is False
    assert client.last("precall_upload") == (1300.0, UPLOAD_S)
    for _ in range(10):
        clock.advance(0.1)
        test.on_upload(6000)
    assert client.last("precall_uploaded") == 60000  # acknowledged as it arrives
    clock.advance(UPLOAD_S + UPLOAD_GRACE_S)
    assert test._step_upload(clock()) is True  # the window is over: the downlink probe may start
    test.on_upload(6000)
    assert test.upload_bytes == 60000  # late filler is not counted
    kbps, complete = test.upload_measure() or (0.0, True)
    assert not complete and kbps == pytest.approx(54000 * 8 / 1000 / 0.9)  # 9 gaps of 100 ms


def test_all_the_filler_in_time_is_a_lower_bound_and_none_is_no_measure() -> None:
    test, client, clock, endpoints = make_test()
    endpoints.made["pc_1"].got_media = True
    test._step_upload(clock())
    clock.advance(UPLOAD_S + UPLOAD_GRACE_S)
    test._step_upload(clock())
    assert test.upload_measure() is None  # a client that sends no filler: measured by its media

    test, client, clock, endpoints = make_test()
    endpoints.made["pc_1"].got_media = True
    test._step_upload(clock())
    clock.advance(0.05)
    test.on_upload(round(1300 * 1000 / 8 * UPLOAD_S))
    clock.advance(UPLOAD_S + UPLOAD_GRACE_S)
    test._step_upload(clock())
    assert test.upload_measure() == (1300.0, True)
