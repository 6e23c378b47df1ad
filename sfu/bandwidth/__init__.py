"""Bandwidth leaf package: link estimators, stream allocation and admission.

Pure code: no asyncio, no aiortc; every time-dependent method takes ``now`` (seconds). Rates are
kbit/s floats. See the module docstrings for the algorithms.
"""

from sfu.bandwidth.admission import (
    Decision,
    ParticipantEstimate,
    decide,
    precall_verdict,
    predict,
)
from sfu.bandwidth.aimd import AimdSettings
from sfu.bandwidth.allocator import (
    Allocation,
    AllocationSmoother,
    Level,
    LevelChange,
    Receiver,
    ReceiverChange,
    ReceiverLevel,
    SmoothedUpdate,
    Stream,
    StreamAllocation,
    allocate,
)
from sfu.bandwidth.delay import DelayDetector
from sfu.bandwidth.downlink import DownlinkEstimator, DownlinkSettings
from sfu.bandwidth.gcc import Feedback, GccSettings, SendSideEstimator
from sfu.bandwidth.settings import BandwidthSettings
from sfu.bandwidth.trendline import TrendlineSettings, Usage
from sfu.bandwidth.uplink import SequenceLoss, UplinkEstimator, UplinkSettings

__all__ = [
    "BandwidthSettings",
    "AimdSettings",
    "Allocation",
    "AllocationSmoother",
    "Decision",
    "DelayDetector",
    "DownlinkEstimator",
    "DownlinkSettings",
    "Feedback",
    "GccSettings",
    "Level",
    "LevelChange",
    "ParticipantEstimate",
    "Receiver",
    "ReceiverChange",
    "ReceiverLevel",
    "SendSideEstimator",
    "SequenceLoss",
    "SmoothedUpdate",
    "Stream",
    "StreamAllocation",
    "TrendlineSettings",
    "UplinkEstimator",
    "UplinkSettings",
    "Usage",
    "allocate",
    "decide",
    "precall_verdict",
    "predict",
]
