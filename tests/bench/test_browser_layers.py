"""The pure parts of bench/browser_layers.py: rows to series, stalls, holds, freezes."""

from __future__ import annotations

from bench.browser_layers import (
    VideoPoint,
    audio_series,
    delta,
    freeze_bound,
    held_from,
    layer_kbps,
    longest_stall,
    video_series,
    widths,
)


def point(t: float, frames: int, width: int = 640, freezes: int = 0, freeze_s: float = 0.0,
          keyframes: int = 1) -> VideoPoint:
    return VideoPoint(t, frames, keyframes, freezes, freeze_s, frames * 5, width, width * 3 // 4)


def test_rows_become_per_sender_series() -> None:
    rows = [{"t": 1000, "v": {"a": {"fd": 10, "kf": 1, "fc": 0, "fz": 0, "pk": 50, "w": 320,
                                    "h": 240}}, "a": {"a": 40, "b": 41}},
            {"t": 1200, "v": {}, "a": {"b": 50}}]
    assert video_series(rows, "a") == [VideoPoint(1.0, 10, 1, 0, 0.0, 50, 320, 240)]
    assert [(p.t, p.count) for p in audio_series(rows, "b")] == [(1.0, 41), (1.2, 50)]
    assert video_series(rows, "b") == []


def test_a_stall_is_the_longest_time_a_counter_did_not_grow() -> None:
    frames = [10, 14, 18, 18, 18, 18, 18, 22, 26]  # grew by 0.4 s, next at 1.4 s
    pts = [point(i / 5, f) for i, f in enumerate(frames)]
    assert abs(longest_stall(pts, 0.0, 1.6) - 1.0) < 1e-9
    assert abs(longest_stall(pts, 1.4, 1.6) - 0.2) < 1e-9  # one sampling period: flowing
    assert abs(longest_stall(pts, 0.6, 1.2) - 0.6) < 1e-9  # still stuck at the window's end
    # a window without samples, or with one, is a stall of the whole window
    assert longest_stall(pts, 5.0, 8.0) == 3.0


def test_a_window_that_outlasts_its_samples_counts_the_silence_at_its_end() -> None:
    pts = [point(i / 5, 10 + i) for i in range(6)]  # samples stop at 1.0 s
    assert abs(longest_stall(pts, 0.0, 3.0) - 2.0) < 1e-9
    assert abs(longest_stall(pts, 0.0, 1.2) - 0.2) < 1e-9  # one missed sample is not a stall


def test_held_from_is_where_a_condition_starts_to_hold_until_the_end() -> None:
    ws = [640, 640, 320, 640, 320, 320, 320]
    pts = [point(float(i), i, w) for i, w in enumerate(ws)]
    assert held_from(pts, 0.0, 6.0, lambda p: p.width == 320) == 4.0
    assert held_from(pts, 0.0, 6.0, lambda p: p.width == 640) is None
    assert widths(pts, 0.0, 3.0) == {640: 3, 320: 1}


def test_freezes_and_deltas_are_counted_inside_the_window() -> None:
    pts = [point(0.0, 0, freezes=1, freeze_s=0.5, keyframes=1),
           point(1.0, 20, freezes=1, freeze_s=0.5, keyframes=2),
           point(2.0, 40, freezes=3, freeze_s=1.4, keyframes=4)]
    assert freeze_bound(pts, 0.5, 2.0) == (2, 0.9)
    assert delta(pts, 0.0, 2.0, lambda p: p.keyframes) == 3
    assert delta(pts, 9.0, 10.0, lambda p: p.frames) == 0.0


def test_a_layers_rate_counts_only_the_seconds_it_was_sending() -> None:
    rows = [{"t": 0, "o": {"q": [320, 0, "none", 0], "h": [0, 0, "none", 0]}},
            {"t": 1000, "o": {"q": [320, 20, "none", 12_500], "h": [0, 0, "none", 0]}},
            {"t": 2000, "o": {"q": [320, 40, "none", 12_500], "h": [0, 0, "none", 0]}},
            {"t": 3000, "o": {"q": [320, 60, "none", 25_000], "h": [0, 0, "none", 0]}}]
    assert layer_kbps(rows) == {"q": 100.0, "h": 0.0}
