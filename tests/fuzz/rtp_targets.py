"""A real endpoint that publishes and is sent its own streams back: the receive path the fuzz
tests feed (``Endpoint._on_rtp`` and ``_on_rtcp``), without negotiating."""

from __future__ import annotations

from sfu.transport.counters import Counters
from sfu.transport.endpoint import Endpoint, EndpointListener
from sfu.transport.forwarder import Consumer, OutStream
from sfu.transport.peer import AnswerInfo, PublishInfo
from sfu.transport.settings import MediaSettings
from tests.transport.test_forwarder import Sink

AUDIO, VIDEO, VIDEO_RTX, OTHER = 0xA0D10, 0x71DE0, 0x71DE1, 0x5EEEE
EXT_IDS = {"mid": 1, "audio_level": 2, "abs_send_time": 3}


def publishing_endpoint() -> tuple[Endpoint, Sink, Counters]:
    """An endpoint that publishes audio and video (as its answer said) and is sent both back,
    with transport-cc on what it publishes and on what it is sent."""
    counters = Counters()
    endpoint = Endpoint("e1", MediaSettings(), EndpointListener(), counters)
    sink = Sink()
    sink.reset = lambda: None  # type: ignore[attr-defined]  # what closing the peer calls
    endpoint.peer.wire = sink  # type: ignore[assignment]
    endpoint._update_producers(AnswerInfo(publish={
        "audio": PublishInfo("audio", "0", True, AUDIO, None, 111, EXT_IDS),
        "video": PublishInfo("video", "1", True, VIDEO, VIDEO_RTX, 96, EXT_IDS),
    }, payload_types={}))
    endpoint._apply_transport_cc(5)
    endpoint._apply_transport_cc_in(5)
    for i, producer in enumerate(endpoint.producers.values()):
        out = OutStream(ssrc=0x500 + i, mid=str(2 + i), kind=producer.kind, sink=sink,
                        clock_rate=90000, pt_map={}, twcc=endpoint.twcc)
        endpoint.out_by_ssrc[out.ssrc] = out
        Consumer(producer, out, counters)
        producer.watch_arrivals()
    return endpoint, sink, counters
