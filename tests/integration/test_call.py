"""Participants in a room exchange audio and video, forwarded packet by packet."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading

import aiortc.rtcrtpreceiver
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder

from sfu.client.client import Client, ClientError
from sfu.transport.endpoint import Endpoint
from tests.integration.helpers import close_all, join_all, receives_everyone, wait_for


async def test_three_participants_receive_each_others_audio_and_video(server, token, clip):
    clients = await join_all(server.url, [token(sub=f"s{i}") for i in range(3)], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone(clients), timeout=15)
        for c in clients:
            others = {o.participant for o in clients if o is not c}
            tracks = {(t.participant, t.kind) for t in c.tracks.values() if t.packets}
            assert tracks == {(p, k) for p in others for k in ("audio", "video")}
    finally:
        await close_all(clients)


async def test_joined_lists_the_others_and_they_are_told(server, token, clip):
    a = Client(server.url, token(sub="a", name="Dr A"), clip=clip)
    b = Client(server.url, token(sub="b", name="Dr B"), clip=clip)
    try:
        joined_a = await a.join({"room": "team"})
        assert joined_a["participants"] == [] and joined_a["target"] == {"room": "team"}
        joined_b = await b.join({"room": "team"})
        assert joined_b["participants"] == [{"id": a.participant, "name": "Dr A", "role": "staff"}]
        msg = await a.wait_message(lambda m: m["type"] == "participant_joined")
        assert msg["participant"]["id"] == b.participant
        await b.leave()
        msg = await a.wait_message(lambda m: m["type"] == "participant_left")
        assert msg["participant"]["id"] == b.participant
    finally:
        await close_all([a, b])


async def test_seventh_participant_gets_room_full(server, token, clip):
    clients = await join_all(server.url, [token(sub=f"s{i}") for i in range(6)], clip,
                             {"room": "team"}, publish_video=False)
    seventh = Client(server.url, token(sub="s7"), clip=clip)
    try:
        with pytest.raises(ClientError) as refused:
            await seventh.join({"room": "team"})
        assert refused.value.code == "room_full"
        call = next(iter(server.calls.by_key.values()))
        assert len(call.participants) == 6
    finally:
        await close_all([*clients, seventh])


async def test_leave_and_abrupt_disconnect_clean_up_everything(server, token, clip):
    tasks_before = {t for t in asyncio.all_tasks()}
    clients = await join_all(server.url, [token(sub=f"s{i}") for i in range(3)], clip, {"room": "team"})
    await wait_for(receives_everyone(clients), timeout=15)
    await clients[0].leave()
    await clients[1].vanish()  # no leave, socket just gone
    await clients[2].wait_message(lambda m: m["type"] == "participant_left"
                                  and m["participant"]["id"] == clients[1].participant)
    await clients[2].leave()
    await wait_for(lambda: not server.calls.by_key and not server.sessions, timeout=10)
    await asyncio.sleep(0.3)
    gc.collect()
    leftover = [t for t in asyncio.all_tasks() - tasks_before if not t.done()
                and t is not asyncio.current_task()]
    assert not [t for t in leftover if t.get_name().startswith("endpoint-")]
    assert not [o for o in gc.get_objects() if isinstance(o, Endpoint) and not o.closed]
    room = server.registry.get("demo").room("team")
    assert room.participants == []


async def test_vanished_media_is_noticed_and_the_others_are_told(server, token, clip):
    server.config = dataclasses.replace(server.config, media=dataclasses.replace(
        server.config.media, inactivity_timeout=2.0))  # read by every endpoint made from now
    a, b = await join_all(server.url, [token(sub="a"), token(sub="b")], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone([a, b]), timeout=15)
        # b's media dies silently (no DTLS close, no BYE) while its signaling socket stays open
        b._rtcp_task.cancel()
        for transceiver in b._pc.getTransceivers():
            for name in ("_RTCRtpSender__rtp_task", "_RTCRtpSender__rtcp_task"):
                task = getattr(transceiver.sender, name, None)
                if task is not None:
                    task.cancel()
        conn = b._pc.getTransceivers()[0].receiver.transport.transport._connection
        for protocol in conn._protocols:
            protocol.transport.close()
        msg = await a.wait_message(lambda m: m["type"] == "participant_left", timeout=15)
        assert msg["participant"]["id"] == b.participant
    finally:
        await close_all([a, b])


async def test_the_server_never_decodes_or_encodes(server, token, clip, monkeypatch):
    calls = []

    def refuse(kind):
        def f(*args, **kwargs):
            calls.append(kind)
            raise AssertionError(f"{kind} called")
        return f

    # The clients in this process publish pre-encoded packets (Encoder.pack, never encode)
    # and receive without decoding, so any call here would be the server's.
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", refuse("get_decoder"))
    for cls in (Vp8Encoder, OpusEncoder):
        monkeypatch.setattr(cls, "encode", refuse(f"{cls.__name__}.encode"))
    for cls in (Vp8Decoder, OpusDecoder):
        monkeypatch.setattr(cls, "decode", refuse(f"{cls.__name__}.decode"))
    clients = await join_all(server.url, [token(sub=f"s{i}") for i in range(3)], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone(clients), timeout=15)
        assert calls == []
        assert not [t for t in threading.enumerate() if "decoder" in t.name]
        assert server.counters.forwarded_packets["video"] > 0
    finally:
        await close_all(clients)


async def test_sender_reports_reach_subscribers_and_receiver_reports_reach_publishers(server, token, clip):
    a, b = await join_all(server.url, [token(sub="a"), token(sub="b")], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone([a, b]), timeout=15)
        # an SR per forwarded stream, translated from the publisher's own: receivers keep lip sync
        await wait_for(lambda: all(t.stats is not None and t.stats.lsr for t in a.tracks.values()
                                   if t.packets), timeout=10)
        # the server's receiver reports reach the publisher, about each stream it publishes
        await wait_for(lambda: len(b.senders) == 2 and all(s.reports for s in b.senders), timeout=10)
        assert all(s.reports[-1].highest_seq > 0 for s in b.senders)
    finally:
        await close_all([a, b])


async def test_probe_padding_on_the_rtx_stream_is_not_counted_as_the_video_track(
        server, token, clip):
    # the client maps its RTX SSRCs from the offer's FID groups: padding and retransmissions
    # must not restart a track's loss accounting (they did, and made received rates look
    # higher than the shaped link's)
    a, b = await join_all(server.url, [token(sub="pa"), token(sub="pb")], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone([a, b]), timeout=15)
        video = b.received_from(a.participant or "", "video")
        assert video is not None and video.stats is not None
        ssrc, stats, packets = video.ssrc, video.stats, video.packets
        (call,) = server.calls.by_key.values()
        endpoint = call.participants[b.participant].endpoint
        endpoint.send_padding(400.0, 0.3)
        await wait_for(lambda: b.rtx_packets >= 10, timeout=5)
        await wait_for(lambda: video.packets > packets + 10, timeout=5)
        assert (video.ssrc, video.stats) == (ssrc, stats)  # same stream, same accounting
        assert stats.expected - stats.received <= 2  # nothing lost on loopback
    finally:
        await close_all([a, b])
