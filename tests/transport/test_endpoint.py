"""What an endpoint tells the control plane: report and REMB listeners, bytes sent per stream."""

from __future__ import annotations

import asyncio

from aiortc import (
    AudioStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)

from sfu.transport import packets as P
from sfu.transport.counters import Counters
from sfu.transport.endpoint import Endpoint, EndpointListener, TrackInfo
from sfu.transport.forwarder import Consumer, OutStream
from sfu.transport.settings import MediaSettings
from tests.transport.test_forwarder import Sink, producer, vp8


def endpoint_sending_on(ssrc: int, sink: Sink) -> tuple[Endpoint, OutStream]:
    endpoint = Endpoint("e1", MediaSettings(), EndpointListener(), Counters())
    out = OutStream(ssrc=ssrc, mid="2", kind="video", sink=sink, clock_rate=90000, pt_map={})
    endpoint.out_by_ssrc[ssrc] = out  # as subscribe() would, without negotiating
    return endpoint, out


def receiver_feedback(ssrc: int, bitrate: int) -> bytes:
    block = P.ReportBlock(ssrc, 64, 3, 1000, 90, 0, 0)
    return P.build_rr(P.ReceiverReport(7, [block])) + P.build_remb(7, bitrate, [ssrc])


async def test_report_and_remb_listeners_hear_the_receiver_until_the_endpoint_closes():
    endpoint, _ = endpoint_sending_on(555, Sink())
    reports: list[tuple[int, int, float, float | None]] = []
    rembs: list[tuple[int, float]] = []
    endpoint.listen_reports(lambda block, now, rtt: reports.append((block.ssrc, block.fraction_lost,
                                                                     now, rtt)))
    endpoint.listen_remb(lambda bps, now: rembs.append((bps, now)))
    endpoint._on_rtcp(receiver_feedback(555, 300_000), 1.0)
    endpoint._on_rtcp(receiver_feedback(999, 200_000), 1.5)  # a block about a stream not sent: ignored
    assert reports == [(555, 64, 1.0, None)]
    assert [now for _, now in rembs] == [1.0, 1.5] and abs(rembs[0][0] - 300_000) < 300_000 * 0.01
    await endpoint.close()
    endpoint._on_rtcp(receiver_feedback(555, 300_000), 2.0)
    endpoint.listen_remb(lambda bps, now: rembs.append((bps, now)))  # too late: never called
    endpoint._on_rtcp(receiver_feedback(555, 300_000), 2.5)
    assert len(reports) == 1 and len(rembs) == 2


async def test_sent_octets_are_the_bytes_sent_so_far_per_outgoing_ssrc():
    sink = Sink()
    endpoint, out = endpoint_sending_on(555, sink)
    assert endpoint.sent_octets() == {555: 0}
    prod = producer()
    Consumer(prod, out, Counters())
    prod.on_rtp(vp8(1, 0, key=True), 0.0)
    prod.on_rtp(vp8(2, 3000), 0.1)
    assert endpoint.sent_octets() == {555: sum(len(wire) for wire in sink.rtp)} and len(sink.rtp) == 2
    await endpoint.close()


class EchoListener(EndpointListener):
    """Like a pre-call test: keeps the offers and sends the client's media back to it."""

    def __init__(self) -> None:
        self.offers: list[str] = []

    async def send_offer(self, endpoint: object, sdp: str, tracks: list[TrackInfo]) -> None:
        self.offers.append(sdp)

    def producers_changed(self, endpoint: object) -> None:
        assert isinstance(endpoint, Endpoint)
        for prod in list(endpoint.producers.values()):
            endpoint.subscribe(prod)


async def test_an_answer_that_crosses_the_close_changes_nothing():
    """A pre-call test can end (and close its endpoint) while the client's answer is being
    applied: the answer is dropped quietly; it raised InvalidStateError out of the signaling
    socket's handler (a traceback in the log) before."""
    listener = EchoListener()
    endpoint = Endpoint("e1", MediaSettings(), listener, Counters())
    client = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        endpoint.start()
        endpoint.renegotiate()
        async with asyncio.timeout(5):
            while not listener.offers:
                await asyncio.sleep(0.01)
        await client.setRemoteDescription(RTCSessionDescription(listener.offers[0], "offer"))
        client.addTrack(AudioStreamTrack())
        client.addTrack(VideoStreamTrack())
        await client.setLocalDescription(await client.createAnswer())
        applying = asyncio.ensure_future(endpoint.apply_answer(client.localDescription.sdp))
        await asyncio.sleep(0)  # under way: aiortc is applying it
        await endpoint.close()
        await applying
        assert endpoint.subscribed() == []
    finally:
        await endpoint.close()
        await client.close()
