"""The ``[bandwidth]`` section of the configuration: admission thresholds and the pre-call probe."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BandwidthSettings:
    min_video_kbps: int = 150
    min_audio_kbps: int = 40
    audio_only_acceptable: bool = True
    warn_kbps: int = 330
    # a pre-call test says ``ok`` only for a link that carries this much each way: a two-party
    # consultation with video in full (admission's FULL_VIDEO_KBPS); between warn_kbps and this
    # it says ``warn`` (video reduced)
    good_kbps: int = 1000
    block_kbps: int = 180
    probe_seconds: float = 3.0
