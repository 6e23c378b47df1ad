"""The synthetic client's simulcast: layers of three sizes, sent in lockstep, one SSRC and rid each,
the server's offer answered as Chromium answers it, layers turned off and on (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.client import media
from sfu.client.client import Client
from sfu.client.media import (
    Clip,
    ClipParams,
    LayerSize,
    Renditions,
    SimulcastVideoTrack,
    clip_path,
    load_layers,
)
from sfu.client.sender import PacedRtpSender, SimulcastSender
from sfu.client.simulcast import SimulcastOffer, answer_simulcast, simulcast_offer
from sfu.transport import packets as P

FPS = 30
KEYFRAME_EVERY = 15  # 0.5 s at 30 fps
SIZES = (LayerSize(64, 36, 40), LayerSize(128, 72, 80), LayerSize(256, 144, 160))
PARAMS = ClipParams(seconds=1.0, keyframe_interval_s=0.5)
RID_EXT, MID_EXT = 10, 1


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layers")


@pytest.fixture(scope="module")
def layers(clip_dir: Path) -> Renditions:
    return load_layers(clip_dir, PARAMS, SIZES)


class Wire:
    def __init__(self) -> None:
        self.packets: list[P.RtpPacket] = []
        self.raw: list[bytes] = []
        self.up = True

    def ready(self) -> bool:
        return self.up

    def send_rtp(self, data: bytes) -> None:
        self.raw.append(data)
        self.packets.append(P.parse_rtp(data))

    def frames(self, ssrc: int) -> list[tuple[int, bool]]:
        """(timestamp, keyframe) of each frame sent on ``ssrc``: its first packet's."""
        return [(p.ts, not p.payload[1] & 1) for p in self.packets
                if p.ssrc == ssrc and p.payload[0] & 0x10]


def layer_senders(track: SimulcastVideoTrack, wire: Wire) -> list[PacedRtpSender]:
    return [PacedRtpSender(track, wire, ssrc=1000 + i, payload_type=96, clock_rate=90_000,
                           mid="1", ext_ids={"mid": MID_EXT, "rid": RID_EXT}, rid=rid)
            for i, rid in enumerate("qhf")]


class Steps:
    """Polls a sender one frame period at a time."""

    def __init__(self, sender: SimulcastSender) -> None:
        self.sender = sender
        self.frame = 0

    def run(self, frames: int) -> None:
        for _ in range(frames):
            self.sender.poll(100.0 + self.frame / FPS)  # exactly when each frame is due
            self.frame += 1


# --- the layers ------------------------------------------------------------------------------


def test_layers_differ_in_size_only(layers: Renditions, clip_dir: Path) -> None:
    assert layers.sizes == ((64, 36), (128, 72), (256, 144))
    assert layers.kbps == (40, 80, 160)
    counts = {len(c.video) for c in layers.clips}
    keyframes = {c.keyframe_indices for c in layers.clips}
    assert counts == {FPS} and keyframes == {(0, KEYFRAME_EVERY)}
    assert {c.params.fps for c in layers.clips} == {FPS}
    # each size is a cache file of its own
    paths = {clip_path(clip_dir, c.params) for c in layers.clips}
    assert len(paths) == 3 and all(p.exists() for p in paths)


def test_layers_come_from_the_cache_the_second_time(
    layers: Renditions, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_encoding(params: ClipParams) -> Clip:
        raise AssertionError(f"encoded again: {params}")

    monkeypatch.setattr(media, "encode_clip", no_encoding)
    assert load_layers(clip_dir, PARAMS, SIZES) == layers


def test_the_default_layers_are_180p_360p_and_720p() -> None:
    assert [(s.width, s.height, s.kbps) for s in media.SIMULCAST_LAYERS] == [
        (320, 180, 150), (640, 360, 500), (1280, 720, 1500)]


def test_layer_sizes_must_be_ascending(clip_dir: Path) -> None:
    with pytest.raises(ValueError):
        load_layers(clip_dir, PARAMS, (SIZES[1], LayerSize(64, 36, 160)))


# --- the rid on the wire ---------------------------------------------------------------------


def test_every_packet_of_a_layer_carries_its_rid_and_the_mid(layers: Renditions) -> None:
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    sender = layer_senders(track, wire)[1]
    big = layers.clips[2].video[0].data  # a keyframe of several packets
    assert len(big) > 1200
    sender.send_frame(big, 0)
    assert len(wire.packets) > 1
    for packet in wire.packets:
        assert packet.ext == {MID_EXT: b"1", RID_EXT: b"h"}
    # one-byte form: 0xBEDE, one word; id 1 length 1 "1", id 10 length 1 "h"
    assert wire.raw[0][12:20] == bytes.fromhex("bede0001" "1031" "a068")


def test_no_rid_without_the_negotiated_extension(layers: Renditions) -> None:
    wire = Wire()
    sender = PacedRtpSender(SimulcastVideoTrack(layers), wire, ssrc=7, payload_type=96,
                            clock_rate=90_000, mid="1", ext_ids={"mid": MID_EXT}, rid="q")
    sender.send_frame(b"\x00" * 10, 0)
    assert wire.packets[0].ext == {MID_EXT: b"1"}


# --- lockstep, keyframes, layers off and on --------------------------------------------------


def test_layers_send_the_same_frames_at_the_same_timestamps(layers: Renditions) -> None:
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    senders = layer_senders(track, wire)
    steps = Steps(SimulcastSender(track, senders, wire))
    steps.run(2 * FPS + 5)  # across the loop
    q, h, f = (wire.frames(s.ssrc) for s in senders)
    assert len(q) == 2 * FPS + 5
    # each layer has its own random timestamp base: compare the steps and the keyframes
    for frames in (q, h, f):
        assert [(ts - frames[0][0]) % 2**32 for ts, _ in frames] == [
            n * 3000 for n in range(len(frames))]
        assert [k for _, k in frames] == [n % KEYFRAME_EVERY == 0 for n in range(len(frames))]
    sizes = [sum(len(p.payload) for p in wire.packets if p.ssrc == s.ssrc) for s in senders]
    assert sizes[0] < sizes[1] < sizes[2]


def test_the_first_frame_sent_once_connected_is_a_keyframe(layers: Renditions) -> None:
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    wire.up = False
    senders = layer_senders(track, wire)
    steps = Steps(SimulcastSender(track, senders, wire))
    steps.run(4)
    assert wire.packets == []
    wire.up = True
    steps.run(3)
    for s in senders:
        frames = wire.frames(s.ssrc)
        assert frames and frames[0][1], "starts with a keyframe"
        assert len(frames) == 2  # the frame that found the wire up asked for a keyframe


def test_a_keyframe_request_puts_a_keyframe_on_every_layer_next(layers: Renditions) -> None:
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    senders = layer_senders(track, wire)
    steps = Steps(SimulcastSender(track, senders, wire))
    steps.run(5)
    track.request_keyframe()
    steps.run(1)
    assert [wire.frames(s.ssrc)[-1][1] for s in senders] == [True, True, True]
    assert track.keyframe_requests == 1


def test_a_layer_turned_off_sends_nothing_and_resumes_with_a_keyframe(layers: Renditions) -> None:
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    senders = layer_senders(track, wire)
    sender = SimulcastSender(track, senders, wire)
    steps = Steps(sender)
    steps.run(3)
    assert sender.set_active("f", False)
    assert not sender.set_active("f", False)  # no change
    assert not sender.set_active("x", False)  # not ours
    steps.run(20)
    f = wire.frames(senders[2].ssrc)
    assert len(f) == 3 and len(wire.frames(senders[0].ssrc)) == 23
    seq_before = senders[2]._seq
    assert sender.set_active("f", True)
    steps.run(1)
    f = wire.frames(senders[2].ssrc)
    assert len(f) == 4 and f[-1][1], "back at once, with a keyframe"
    assert (f[-1][0] - f[0][0]) % 2**32 == 23 * 3000  # its timestamps went on meanwhile
    first_seq = next(p.seq for p in reversed(wire.packets)
                     if p.ssrc == senders[2].ssrc and p.payload[0] & 0x10)
    assert first_seq == (seq_before + 1) & 0xFFFF  # no gap in sequence numbers
    # the other layers jumped to the keyframe with it
    assert wire.frames(senders[0].ssrc)[-1][1]


def test_a_resumed_layer_waits_for_a_keyframe_it_did_not_get(layers: Renditions) -> None:
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    senders = layer_senders(track, wire)
    sender = SimulcastSender(track, senders, wire)
    steps = Steps(sender)
    steps.run(2)
    sender.set_active("h", False)
    steps.run(2)
    sender.set_active("h", True)
    track._keyframe_requested = False  # as if the request were lost: the layer must not go on
    steps.run(5)                       # with a delta frame
    h = wire.frames(senders[1].ssrc)
    assert len(h) == 2


# --- the client: PLIs and publish_layers -----------------------------------------------------


def test_a_pli_for_a_layer_asks_the_layers_for_a_keyframe(layers: Renditions) -> None:
    client = Client("http://127.0.0.1:1", "token", simulcast=layers)
    track = SimulcastVideoTrack(layers)
    client.video_track = track
    client._on_rtcp(P.build_pli(0x1234, 1002), 1.0)
    assert client.pli_received == 1 and client.pli_by_ssrc == {1002: 1}
    assert track.keyframe_requests == 1


def test_publish_layers_turns_layers_off_and_on(layers: Renditions) -> None:
    client = Client("http://127.0.0.1:1", "token", simulcast=layers)
    track = SimulcastVideoTrack(layers)
    wire = Wire()
    client.simulcast_sender = SimulcastSender(track, layer_senders(track, wire), wire)
    client.publish_layers = {"q": True, "h": True, "f": False}
    client._apply_publish_layers()
    assert client.simulcast_sender.active == [True, True, False]
    client.publish_layers = {"q": True, "h": False, "f": True}
    client._apply_publish_layers()
    assert client.simulcast_sender.active == [True, False, True]


# --- the answer ------------------------------------------------------------------------------

SIMULCAST_LINES = [
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=rid:q recv",
    "a=rid:h recv",
    "a=rid:f recv",
    "a=simulcast:recv q;h;f",
]

ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendrecv", "a=rtpmap:111 opus/48000/2",
    "a=ssrc:111 cname:x",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1", "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 rtx/90000", "a=ssrc-group:FID 222 333", "a=ssrc:222 cname:x",
    "a=ssrc:333 cname:x",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:2", "a=recvonly", "a=rtpmap:96 VP8/90000",
    "",
])


def offer_with(video_lines: list[str], *, kind: str = "video") -> str:
    return "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=recvonly",
        f"m={kind} 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=recvonly",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", *video_lines,
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:2", "a=sendonly", "a=ssrc:5 cname:s",
        "",
    ])


def test_the_contract_offer_asks_for_q_h_f() -> None:
    offer = simulcast_offer(offer_with(SIMULCAST_LINES))
    assert offer == SimulcastOffer("1", ("q", "h", "f"), 10, 11)


def test_an_offer_without_simulcast_asks_for_nothing() -> None:
    assert simulcast_offer(offer_with([])) is None
    assert simulcast_offer(offer_with(["a=rid:q recv"])) is None  # rids but no simulcast line
    assert simulcast_offer(offer_with(["a=simulcast:recv q;h"])) is None  # no rid lines
    assert simulcast_offer(offer_with(SIMULCAST_LINES, kind="audio")) is None  # not video's


def test_simulcast_alternatives_and_paused_streams() -> None:
    lines = ["a=rid:q recv", "a=rid:h recv max-width=640", "a=rid:x send",
             "a=simulcast:send x recv ~q;h,z"]
    assert simulcast_offer(offer_with(lines)) == SimulcastOffer("1", ("q", "h"), None, None)


def test_the_answer_sends_each_rid_and_names_no_ssrc() -> None:
    offer = simulcast_offer(offer_with(SIMULCAST_LINES))
    assert offer is not None
    answer = answer_simulcast(ANSWER, offer, ("q", "h", "f"))
    sections = answer.split("\r\nm=")
    assert sections[0] == ANSWER.split("\r\nm=")[0]
    assert sections[1] == ANSWER.split("\r\nm=")[1]  # audio keeps its SSRC
    assert sections[3] == ANSWER.split("\r\nm=")[3]
    video = sections[2].split("\r\n")
    assert not [line for line in video if line.startswith(("a=ssrc", "a=ssrc-group"))]
    assert video[-6:] == [
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]
    assert answer.endswith("a=recvonly\r\na=rtpmap:96 VP8/90000\r\n")
    # applying it twice (every renegotiation's answer) gives the same text
    assert answer_simulcast(answer, offer, ("q", "h", "f")) == answer


def test_fewer_layers_answer_the_lowest_rids() -> None:
    offer = simulcast_offer(offer_with(SIMULCAST_LINES))
    assert offer is not None
    answer = answer_simulcast(ANSWER, offer, ("q", "h"))
    assert "a=rid:f" not in answer and "a=simulcast:send q;h\r\n" in answer


async def test_aiortc_takes_the_rewritten_answer() -> None:
    """A real aiortc offer with the simulcast lines, answered by aiortc and rewritten: the offerer
    (as the server's aiortc) accepts it, and the rewritten lines are what the server reads."""
    server = RTCPeerConnection()
    client = RTCPeerConnection()
    try:
        server.addTransceiver("audio", "recvonly")
        server.addTransceiver("video", "recvonly")
        await server.setLocalDescription(await server.createOffer())
        head, audio, video = server.localDescription.sdp.split("\r\nm=")
        offer_sdp = "\r\nm=".join([head, audio, video.rstrip("\r\n") + "\r\n"
                                   + "\r\n".join(SIMULCAST_LINES) + "\r\n"])
        offer = simulcast_offer(offer_sdp)
        assert offer is not None and offer.mid == "1"
        await client.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        for transceiver in client.getTransceivers():
            transceiver.direction = "sendrecv"
        await client.setLocalDescription(await client.createAnswer())
        answer = answer_simulcast(client.localDescription.sdp, offer, ("q", "h", "f"))
        await server.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        video_answer = answer.split("\r\nm=")[2]
        assert "a=simulcast:send q;h;f\r\n" in video_answer
        assert "a=ssrc:" not in video_answer and "a=ssrc:" in answer.split("\r\nm=")[1]
        assert simulcast_offer(answer) is None  # it sends; it does not ask to receive
    finally:
        await client.close()
        await server.close()
