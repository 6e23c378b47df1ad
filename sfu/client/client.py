"""A synthetic participant that speaks the contract (API.md): for tests, bench and load tools.

It publishes the pre-encoded clip (no encoding at run time: aiortc packetizes ``av.Packet``s)
and receives without decoding: RTP is taken after SRTP and only counted (packets, frames,
keyframes per m-line). It answers the server's offers with ``bundlePolicy=max-bundle``, sends
receiver reports for what it receives, and turns the server's PLIs into keyframes.

Like Chromium, it accepts transport-cc when the server offers it, on both directions: it sends
transport feedback on what it receives (every 100 ms), and it stamps what it publishes with
transport-wide numbers and runs the send-side estimator (``sfu.bandwidth.SendSideEstimator``)
on the server's feedback; its video follows the lower of that estimate and the server's REMB.

With ``simulcast`` layers, it answers a server offer that asks for simulcast as Chromium does
(``sfu/client/simulcast.py``) and publishes every layer on an SSRC of its own with its rid, in
lockstep, turning layers off and on as the server's ``publish_layers`` says (issue 12).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import InvalidStateError

from sfu.bandwidth import SendSideEstimator
from sfu.client.adapt import publisher_estimator
from sfu.client.media import (
    Clip,
    ClipAudioTrack,
    ClipVideoTrack,
    Renditions,
    SimulcastVideoTrack,
    load_clip,
)
from sfu.client.remb import ReceiveEstimate, RembSettings
from sfu.client.sender import PacedRtpSender, Pollable, SendScheduler, SimulcastSender
from sfu.client.simulcast import SimulcastOffer, answer_simulcast, simulcast_offer
from sfu.transport import aiortc_glue as glue
from sfu.transport import packets as P
from sfu.transport.packets import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_TRANSPORT_CC
from sfu.transport.stats import ReceiveStats
from sfu.transport.transportcc import ReceiveHistory, SendHistory

UPLOAD_IN_FLIGHT = 32_000  # pre-call filler sent but not acknowledged, at most (bytes)

_SEQ_TS_SSRC = struct.Struct("!HII")
# what the published audio takes of the send-side estimate (Opus ~32 kbit/s and its headers):
# video gets the rest, as libwebrtc's allocator gives audio its rate first
AUDIO_SHARE_KBPS = 40
MAX_REDIRECTS = 3  # redirects one join follows (contract: at most 3, then an error)


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class TrackStats:
    mid: str
    kind: str = ""
    participant: str = ""
    ssrc: int | None = None
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    keyframes: int = 0
    first_packet_at: float | None = None
    first_keyframe_at: float | None = None
    last_packet_at: float | None = None
    assigned_at: float | None = None
    max_seq_gap: int = 0
    last_seq: int | None = None
    lost: int = 0
    stats: ReceiveStats | None = None


@dataclass
class Client:
    url: str  # http://host:port of the server
    token: str
    clip: Clip | None = None
    publish_audio: bool = True
    publish_video: bool = True
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    messages: list[dict[str, Any]] = field(default_factory=list)
    participant: str | None = None
    tracks: dict[str, TrackStats] = field(default_factory=dict)  # mid -> stats
    joined_at: float | None = None
    offers: int = 0
    pli_received: int = 0
    remb_received: int = 0  # REMBs the server sent us (the video track follows them)
    # Count most media from the clear-text RTP header without SRTP decryption: one packet in 64
    # per stream is still decrypted and authenticated (which also keeps libsrtp's rollover counter
    # current), and every video packet until the stream's first keyframe. For load generation.
    count_only: bool = False
    # Optional shared pacing timer for many clients in one process (see SendScheduler).
    scheduler: SendScheduler | None = None
    # Publish video from these renditions (instead of ``clip``'s single one), following the
    # server's REMB like an encoder (sfu/client/adapt.py), starting at most at ``start_kbps``.
    renditions: Renditions | None = None
    start_kbps: int = 600
    # Send REMB about once a second for the streams we receive, from a receive-side estimate that
    # grows like Chromium's (sfu/client/remb.py); False: receiver reports only (the old client).
    send_remb: bool = True
    remb_settings: RembSettings | None = None
    # Accept transport-cc when the server offers it: send its feedback every 100 ms, stamp what
    # we publish and follow the server's feedback with a send-side estimate (GCC).
    send_twcc: bool = True
    # Send the filler a pre-call test asks for (``precall_upload``), as the web client does.
    send_precall_upload: bool = True
    # Put the token in the WebSocket URL (``?token=``) instead of a first ``auth`` message.
    url_token: bool = False
    # Gather a relayed candidate through the TURN server ``joined`` names (``ice_servers``),
    # as a browser does; the STUN/TURN servers of the last ``joined`` are kept here.
    use_turn: bool = True
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    # Publish video as simulcast when the server's offer asks for it (``a=simulcast:recv`` on the
    # first video m-line): these layers (lowest first, ``media.load_layers``), one SSRC each, the
    # lowest rid the smallest; the server's ``publish_layers`` turns layers off and on. One
    # stream, as without it, when the offer does not ask.
    simulcast: Renditions | None = None
    # A ``redirect`` in the middle of a call (its node drains and the call moves) is followed as
    # the web client does: a new socket to ``url``, the same token and join, new media.
    follow_moves: bool = True

    def __post_init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pc: RTCPeerConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._rtcp_task: asyncio.Task[None] | None = None
        self._ssrc_to_mid: dict[int, str] = {}
        # the server's RTX streams (retransmissions, probe padding): not a track's media, so
        # they must not restart its loss accounting; counted apart, and acknowledged for
        # transport-cc like any packet
        self._rtx_ssrcs: set[int] = set()
        self.rtx_packets = 0
        self._wire: glue.WireSender | None = None
        self._hooked = False
        self.senders: list[PacedRtpSender] = []  # one per published stream (simulcast: per layer)
        self._scheduled: list[Pollable] = []  # what the shared scheduler polls for us
        self.simulcast_sender: SimulcastSender | None = None  # drives the layers, when simulcast
        self.simulcast_rids: tuple[str, ...] = ()  # the layers' rids, lowest first
        self.publish_layers: dict[str, bool] | None = None  # the server's last publish_layers
        self.publish_layers_received = 0
        self.video_layers: dict[str, Any] | None = None  # the server's last video_layers
        self.pli_by_ssrc: dict[int, int] = {}  # PLIs / FIRs the server sent, per media SSRC
        self.last_answer: str | None = None  # the SDP of the last answer we sent
        self._counted: dict[int, TrackStats] = {}  # SSRC -> stats counted without decryption
        self._sender_tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._closed = False
        self.video_track: ClipVideoTrack | None = None
        self.audio_track: ClipAudioTrack | None = None
        self.error: ClientError | None = None
        self.ended: str | None = None
        self.target: dict[str, str] | None = None  # the last join's
        self.node_url = self.url  # http(s)://host:port of the node the socket is on
        self.redirects = 0  # redirects the last join followed
        self.moves = 0  # calls moved to another node mid-call (a redirect after joined)
        self._move_task: asyncio.Task[None] | None = None
        self._socket_from = 0  # index in ``messages`` of the current socket's first message
        self.rtcp_ssrc = 0x5EED0000 | (id(self) & 0xFFFF)
        self.estimate = ReceiveEstimate(self.remb_settings)
        self.remb_sent = 0
        self.remb_bps: int | None = None  # the last REMB we sent
        self._rx_bytes = 0  # RTP bytes received, all streams (for the estimate)
        self._loss_prev: dict[int, tuple[ReceiveStats, int, int]] = {}  # SSRC -> last counters
        self._probe_ssrc: int | None = None  # the audio stream whose transit measures delay
        self._probe_transit = float("inf")  # least (arrival - RTP time) this second, seconds
        self._loss_total = (0, 0)  # packets expected and received, summed over streams
        # transport-cc, when the server's offer negotiates it: the extension's id, the arrivals
        self._twcc_id: int | None = None
        self.twcc: ReceiveHistory | None = None
        self._twcc_task: asyncio.Task[None] | None = None
        self._upload_task: asyncio.Task[None] | None = None
        self._upload_acked = 0  # filler bytes the server acknowledged (precall_uploaded)
        # ... and on what we publish: the numbers handed out and the estimate on the feedback
        self.twcc_out: SendHistory | None = None
        self.gcc: SendSideEstimator | None = None
        self.feedback_received = 0  # transport feedback packets from the server
        self._sr_sent: dict[int, float] = {}  # middle 32 bits of our SRs' NTP -> sent at
        self._rx_time = glue.RxTime()  # the kernel's receive time of the datagram being handled

    # -- signaling ------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the signaling socket to the node ``url`` names (the original one) and send the
        token. A ``join`` may move it to another node (``redirect``)."""
        await self._open(ws_endpoint(self.url))

    async def _open(self, ws_url: str) -> None:
        """A new signaling socket to ``ws_url`` (a WebSocket URL), authenticated with our token
        the way this client authenticates (``auth`` message, or ``?token=``)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._socket_from = len(self.messages)  # what this socket says starts here
        if self.url_token:  # the older form, for servers before the 'auth' message
            url = yarl.URL(ws_url).update_query(token=self.token)
            self._ws = await self._session.ws_connect(url, max_msg_size=4 << 20)
        else:
            self._ws = await self._session.ws_connect(ws_url, max_msg_size=4 << 20)
            await self.send({"type": "auth", "token": self.token})
        self.node_url = http_base(ws_url)
        self._reader = asyncio.ensure_future(self._read())

    async def _drop_socket(self) -> None:
        """Stop reading and close the signaling socket (the session stays for the next one)."""
        reader, ws = self._reader, self._ws
        self._reader = self._ws = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if ws is not None:
            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await ws.close()

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def join(self, target: dict[str, str], timeout: float = 10.0) -> dict[str, Any]:
        """Join ``target``; a ``redirect`` (in a cluster, the call lives on another node) is
        followed: a new socket to its ``url``, the same token and the same ``join``, at most
        ``MAX_REDIRECTS`` times (then ``ClientError("too_many_redirects")``). ``node_url``
        says where the call is; ``url`` stays the node this client first used."""
        if self._ws is None:
            await self.connect()
        self.target = dict(target)
        self.redirects = 0
        self.joined_at = time.monotonic()
        deadline = self.joined_at + timeout
        while True:
            await self.send({"type": "join", "target": target})
            msg = await self.wait_message(
                lambda m: m["type"] in ("joined", "error", "redirect"),
                deadline - time.monotonic(), since=self._socket_from)
            if msg["type"] != "redirect":
                break
            if self.redirects >= MAX_REDIRECTS:
                await self._drop_socket()
                raise ClientError("too_many_redirects",
                                  f"more than {MAX_REDIRECTS} redirects for one join")
            ws_url = redirect_url(msg.get("url"))
            if ws_url is None:
                await self._drop_socket()
                raise ClientError("bad_redirect", f"not a WebSocket URL: {msg.get('url')!r}")
            self.redirects += 1
            await self._drop_socket()
            self.error = None  # what the old socket's end said is not about this join
            await asyncio.wait_for(self._open(ws_url), max(0.0, deadline - time.monotonic()))
        if msg["type"] == "error":
            raise ClientError(msg["code"], msg.get("message", ""))
        self.participant = msg["participant"]
        servers = msg.get("ice_servers")
        self.ice_servers = servers if isinstance(servers, list) else []
        return msg

    async def rejoin(self, timeout: float = 10.0) -> dict[str, Any]:
        """Join the last target again on a new socket to the ORIGINAL node (``url``), as a
        client whose connection dropped does: if the call moved (its node died), that node
        redirects to wherever it lives now. The old media connection is dropped; the server
        replaces the old participant with the new one."""
        if self.target is None:
            raise ClientError("bad_request", "rejoin before any join")
        await self._drop_socket()
        await self._reset_media()
        self.participant = None
        self.error = None
        self.ended = None
        await self.connect()
        return await self.join(self.target, timeout)

    async def _move(self, url: object) -> None:
        """The call moved to another node (``redirect`` after ``joined``): join it there."""
        try:
            ws_url = redirect_url(url)
            if ws_url is None or self.target is None:
                self.error = ClientError("bad_redirect", f"not a WebSocket URL: {url!r}")
                return
            await self._drop_socket()
            await self._reset_media()
            self.participant = None
            self.error = None
            self.ended = None
            await self._open(ws_url)
            await self.join(self.target)
            self.moves += 1
        except ClientError as exc:
            self.error = exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.error = ClientError("closed", f"the call's new node did not take it: {exc}")
        finally:
            self._move_task = None
            self._changed.set()

    async def precall(self, seconds: float = 3.0, timeout: float = 20.0) -> dict[str, Any]:
        """Run the server's pre-call link test; the test's peer connection is closed after."""
        if self._ws is None:
            await self.connect()
        await self.send({"type": "precall", "seconds": seconds})
        msg = await self.wait_message(lambda m: m["type"] in ("precall_result", "error"), timeout)
        await self._reset_media()
        if msg["type"] == "error":
            raise ClientError(msg["code"], msg.get("message", ""))
        return msg

    async def _stop_tasks(self) -> None:
        if self.scheduler is not None:
            for sender in self._scheduled:
                self.scheduler.discard(sender)
        self._scheduled = []
        tasks = [t for t in (self._rtcp_task, self._twcc_task, self._upload_task,
                             *self._sender_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._rtcp_task = None
        self._twcc_task = None
        self._upload_task = None
        self._sender_tasks = []

    async def _reset_media(self) -> None:
        """Forget the current peer connection (the next offer starts a new one)."""
        await self._stop_tasks()
        self.senders = []
        self.simulcast_sender = None
        self.simulcast_rids = ()
        if self._pc is not None:
            await self._pc.close()
        self._pc = None
        self._hooked = False
        self._wire = None
        self.tracks.clear()
        self._ssrc_to_mid.clear()
        self._rtx_ssrcs.clear()
        self._counted.clear()
        self._loss_prev.clear()
        self._probe_ssrc = None
        self._twcc_id = None
        self.twcc = None
        self.twcc_out = None
        self.gcc = None

    async def _read(self) -> None:
        try:
            await self._read_messages()
        except (ConnectionError, aiohttp.ClientError) as exc:
            self.error = self.error or ClientError("closed", f"signaling failed: {exc}")
        finally:
            self._changed.set()

    async def _read_messages(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            self.messages.append(data)
            kind = data.get("type")
            if kind == "precall_started":  # the test's TURN servers, before its offer
                servers = data.get("ice_servers")
                self.ice_servers = servers if isinstance(servers, list) else []
            if kind == "offer":
                try:
                    await self._on_offer(data["sdp"])
                except (ConnectionError, aiohttp.ClientError, InvalidStateError):
                    pass  # the socket or the call is closing: keep reading what is left
            elif kind == "tracks":
                self._counted.clear()
                for t in data["tracks"]:
                    stats = self.tracks.get(t["mid"])
                    if stats is None or stats.participant != t["participant"]:
                        # a new m-line, or a recycled one now carrying someone else: new counters
                        self.tracks[t["mid"]] = TrackStats(t["mid"], t["kind"], t["participant"],
                                                           assigned_at=time.monotonic())
            elif kind == "publish_layers" and isinstance(data.get("layers"), dict):
                self.publish_layers = {str(k): bool(v) for k, v in data["layers"].items()}
                self.publish_layers_received += 1
                self._apply_publish_layers()
            elif kind == "video_layers" and isinstance(data.get("layers"), dict):
                self.video_layers = data["layers"]
            elif kind == "precall_uploaded":
                self._upload_acked = int(data.get("bytes") or 0)
            elif kind == "precall_upload" and self.send_precall_upload and self._upload_task is None:
                self._upload_task = asyncio.ensure_future(
                    self._upload(data.get("kbps"), data.get("seconds")))
            elif (kind == "redirect" and self.participant is not None and self.follow_moves
                  and self._move_task is None and not self._closed):
                self._move_task = asyncio.ensure_future(self._move(data.get("url")))
            elif kind == "error":
                self.error = ClientError(data["code"], data.get("message", ""))
            elif kind == "ended":
                self.ended = data.get("reason")
            self._changed.set()

    def _apply_publish_layers(self) -> None:
        """Stop the layers nobody receives, resume the others (with a keyframe)."""
        if self.simulcast_sender is not None and self.publish_layers is not None:
            for rid, active in self.publish_layers.items():
                self.simulcast_sender.set_active(rid, active)

    async def _upload(self, kbps: object, seconds: object) -> None:
        """The pre-call uplink probe: ``kbps`` x ``seconds`` of random bytes (base64) over the
        socket, as fast as it takes them, for at most ``seconds``."""
        if not isinstance(kbps, int | float) or not isinstance(seconds, int | float) \
                or not 0 < kbps <= 100_000 or not 0 < seconds <= 5:
            return
        left = kbps * 1000 / 8 * seconds
        end = time.monotonic() + seconds
        sent = 0
        self._upload_acked = 0
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            while left > 0 and time.monotonic() < end and self._ws is not None \
                    and not self._ws.closed:
                if sent - self._upload_acked >= UPLOAD_IN_FLIGHT:
                    await asyncio.sleep(0.002)  # as the web client: little unacknowledged
                    continue
                chunk = os.urandom(int(min(6000, left)) or 1)
                await self.send({"type": "precall_upload", "data": base64.b64encode(chunk).decode()})
                left -= len(chunk)
                sent += len(chunk)

    async def wait_message(self, predicate: Any, timeout: float = 10.0,
                           since: int = 0) -> dict[str, Any]:
        """The first message from ``since`` on (an index in ``messages``) that ``predicate``
        accepts, waiting for it; ``ClientError("closed")`` when the socket ends first."""
        seen = since
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages[seen:]:
                if predicate(m):
                    return m
            seen = len(self.messages)
            if self._reader is not None and self._reader.done():
                raise ClientError("closed", "signaling socket closed")
            await self._wait_change(deadline)

    async def wait_until(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            await self._wait_change(deadline, tick=0.05)

    async def _wait_change(self, deadline: float, tick: float | None = None) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("condition not met in time")
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(remaining, tick or remaining))

    # -- media ---------------------------------------------------------------------------------------
    async def _on_offer(self, sdp: str) -> None:
        self.offers += 1
        if self._pc is None:
            self._pc = RTCPeerConnection(RTCConfiguration(
                iceServers=self._rtc_ice_servers(), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc = self._pc
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
        simulcast = simulcast_offer(sdp) if self.simulcast is not None else None
        for media in parsed.media:
            for ssrc in media.ssrc:
                self._ssrc_to_mid[int(ssrc.ssrc)] = media.rtp.muxId
            for group in media.ssrc_group:
                if group.semantic == "FID" and len(group.items) == 2:
                    self._rtx_ssrcs.add(int(group.items[1]))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            glue.disable_media_pipeline(transceiver)  # we send ourselves (sfu/client/sender.py)
        first = not self._hooked
        if first:
            self._hooked = True
            dtls = glue.dtls_of(pc.getTransceivers()[0])
            glue.install_gatherer(glue.ice_connection(dtls),
                                  glue.IceSettings(self.ice_addresses, relay=self.use_turn),
                                  self._rx_time)
            glue.hook_dtls(dtls, self._on_rtp, self._on_rtcp, time.monotonic,
                           peek=self._count_protected if self.count_only else None)
            self._wire = glue.WireSender(dtls)
            clip = self.clip or (self.renditions.clips[0] if self.renditions else None) or (
                self.simulcast.clips[len(self.simulcast.clips) // 2] if self.simulcast
                else load_clip())
            if self.publish_audio:
                self.audio_track = ClipAudioTrack(clip)
                pc.addTrack(self.audio_track)
            if self.publish_video and simulcast is not None and self.simulcast is not None:
                # the lowest rid gets the smallest layer; rids beyond our layers are not answered
                count = min(len(simulcast.rids), len(self.simulcast.clips))
                self.simulcast_rids = simulcast.rids[:count]
                self.video_track = SimulcastVideoTrack(Renditions(self.simulcast.clips[:count]))
                pc.addTrack(self.video_track)
            elif self.publish_video:
                self.video_track = ClipVideoTrack(self.renditions or clip,
                                                  start_kbps=self.start_kbps)
                pc.addTrack(self.video_track)
            self._rtcp_task = asyncio.ensure_future(self._run_rtcp())
        answer = await pc.createAnswer()
        if self.send_twcc:
            answer = RTCSessionDescription(sdp=accept_transport_cc(parsed, answer.sdp),
                                           type=answer.type)
            twcc_ids = {e.id for m in parsed.media for e in m.rtp.headerExtensions
                        if e.uri == URI_TRANSPORT_CC}
            if twcc_ids and self.twcc is None:
                self._twcc_id = min(twcc_ids)  # BUNDLE: one id for every m-line
                self.twcc = ReceiveHistory(self.rtcp_ssrc)
                self._twcc_task = asyncio.ensure_future(self._run_twcc())
            if twcc_ids and first and self.senders == []:
                self.twcc_out = SendHistory(min(twcc_ids))
                start = self.start_kbps + (AUDIO_SHARE_KBPS if self.publish_audio else 0)
                self.gcc = publisher_estimator(start)
        await pc.setLocalDescription(answer)
        if first:
            self._start_senders(pc, parsed, simulcast)
        local = pc.localDescription.sdp
        if simulcast is not None and self.simulcast_rids:
            # after aiortc: it would drop the lines it does not know when it serializes
            local = answer_simulcast(local, simulcast, self.simulcast_rids)
        self.last_answer = local
        await self.send({"type": "answer", "sdp": local})

    def _rtc_ice_servers(self) -> list[RTCIceServer]:
        """The TURN servers of ``joined`` for our peer connection (none unless ``use_turn``).

        Only TURN: the client gathers host candidates of its own (``ice_addresses``) and no
        server-reflexive ones, so a STUN server would only be asked for nothing."""
        if not self.use_turn:
            return []
        return [RTCIceServer(urls=s["urls"], username=s.get("username"),
                             credential=s.get("credential"))
                for s in self.ice_servers
                if any(str(url).startswith(("turn:", "turns:")) for url in s.get("urls", []))]

    def selected_pair(self) -> dict[str, Any] | None:
        """The candidate pair ICE selected: our candidate's type and address, the server's
        address (through a TURN server it is the relay's allocation), or None before."""
        if self._pc is None or not self._hooked:
            return None
        pair = glue.selected_pair(glue.dtls_of(self._pc.getTransceivers()[0]))
        if pair is None:
            return None
        local, remote = pair
        return {"local_type": local.type, "local": [local.host, local.port],
                "remote_type": remote.type, "remote": [remote.host, remote.port]}

    def _start_senders(self, pc: RTCPeerConnection, offer: aiortc_sdp.SessionDescription,
                       simulcast: SimulcastOffer | None = None) -> None:
        """Publish on the m-lines the tracks were attached to, with the offer's PTs and ids; a
        simulcast track on one sender per layer, each with an SSRC of its own and its rid."""
        assert self._wire is not None
        sections = {m.rtp.muxId: m for m in offer.media}
        names = {URI_MID: "mid", URI_AUDIO_LEVEL: "audio_level", URI_ABS_SEND_TIME: "abs_send_time"}
        for transceiver in pc.getTransceivers():
            track = transceiver.sender.track
            media = sections.get(transceiver.mid or "")
            if track is None or media is None:
                continue
            wanted = "opus" if track.kind == "audio" else "vp8"
            pt = next((c.payloadType for c in media.rtp.codecs if c.name.lower() == wanted), None)
            if pt is None:
                continue
            ext_ids = {names[e.uri]: e.id for e in media.rtp.headerExtensions if e.uri in names}
            stamps = any(e.uri == URI_TRANSPORT_CC for e in media.rtp.headerExtensions)
            if isinstance(track, SimulcastVideoTrack) and simulcast is not None:
                if simulcast.rid_ext is not None:
                    ext_ids["rid"] = simulcast.rid_ext
                layers = [PacedRtpSender(track, self._wire, ssrc=self._new_ssrc(), payload_type=pt,
                                         clock_rate=90000, mid=media.rtp.muxId, ext_ids=ext_ids,
                                         twcc=self.twcc_out if stamps else None, rid=rid)
                          for rid in self.simulcast_rids]
                self.senders.extend(layers)
                self.simulcast_sender = SimulcastSender(track, layers, self._wire)
                self._apply_publish_layers()
                self._drive(self.simulcast_sender)
                continue
            sender = PacedRtpSender(track, self._wire, ssrc=transceiver.sender._ssrc,
                                    payload_type=pt, clock_rate=48000 if track.kind == "audio" else 90000,
                                    mid=media.rtp.muxId, ext_ids=ext_ids,
                                    twcc=self.twcc_out if stamps else None)
            self.senders.append(sender)
            self._drive(sender)

    def _drive(self, sender: PacedRtpSender | SimulcastSender) -> None:
        """Pace a sender on the shared scheduler, or on a task of its own."""
        if self.scheduler is not None:
            self.scheduler.add(sender)
            self._scheduled.append(sender)
        else:
            self._sender_tasks.append(asyncio.ensure_future(sender.run()))

    def _new_ssrc(self) -> int:
        """A random SSRC none of our streams (nor aiortc's own senders) uses."""
        taken = {s.ssrc for s in self.senders}
        if self._pc is not None:
            taken |= {t.sender._ssrc for t in self._pc.getTransceivers()}
        while True:
            ssrc = random.randint(1, 0xFFFFFFFF)
            if ssrc not in taken:
                return ssrc

    def _count_protected(self, data: bytes, now: float) -> bool:
        """Count an SRTP packet from its clear header; False asks for the full path."""
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        stats = self._counted.get(ssrc)
        if stats is None or seq & 63 == 0:
            return False  # not yet known here, or the one in 64 that is decrypted and checked
        st = stats.stats
        assert st is not None
        delta = (seq - st.max_seq) & 0xFFFF
        if 0 < delta < 0x8000:
            if seq < st.max_seq:
                st.cycles += 0x10000
            st.max_seq = seq
        elif delta == 0:
            return True  # a duplicate
        st.received += 1  # (no jitter on this path: the decrypted sample keeps it current)
        self._rx_bytes += len(data) - 16
        if self._twcc_id is not None:
            self._note_twcc(data, now)
        if ssrc == self._probe_ssrc:
            transit = now - ts / 48000
            if transit < self._probe_transit:
                self._probe_transit = transit
        stats.last_packet_at = now
        stats.packets += 1
        stats.bytes += len(data) - 16  # less the SRTP authentication tag (AEAD AES-GCM)
        stats.last_seq = seq
        if stats.kind != "video" or data[1] & 0x80:  # audio packet, or the last of a video frame
            stats.frames += 1
        return True

    def _on_rtp(self, data: bytes, now: float) -> None:
        try:
            _, seq, ts, ssrc, offset = P.parse_header(data)
        except ValueError:
            return
        mid = self._ssrc_to_mid.get(ssrc)
        if mid is None:
            return
        if ssrc in self._rtx_ssrcs:
            self.rtx_packets += 1
            self._rx_bytes += len(data)
            if self._twcc_id is not None:
                self._note_twcc(data, now)
            return
        stats = self.tracks.setdefault(mid, TrackStats(mid))
        if stats.stats is None or stats.ssrc != ssrc:
            stats.ssrc = ssrc
            stats.stats = ReceiveStats(90000 if stats.kind == "video" else 48000)
        stats.stats.add(seq, ts, now)
        if self.count_only and (stats.kind != "video" or stats.first_keyframe_at is not None):
            self._counted[ssrc] = stats  # from now on counted from the clear header
        if stats.first_packet_at is None:
            stats.first_packet_at = now
        stats.last_packet_at = now
        stats.packets += 1
        stats.bytes += len(data)
        self._rx_bytes += len(data)
        if self._twcc_id is not None:
            self._note_twcc(data, now)
        if stats.kind == "audio":
            if self._probe_ssrc is None:
                self._probe_ssrc = ssrc
                self.estimate.reset_delay()
            if ssrc == self._probe_ssrc:
                transit = now - ts / 48000
                if transit < self._probe_transit:
                    self._probe_transit = transit
        if stats.last_seq is not None:
            gap = (seq - stats.last_seq) & 0xFFFF
            if 1 < gap < 0x8000:
                stats.max_seq_gap = max(stats.max_seq_gap, gap)
        stats.last_seq = seq
        if stats.kind == "video":
            start, key = P.vp8_frame_info(data, offset)
            if start:
                stats.frames += 1
            if key:
                stats.keyframes += 1
                if stats.first_keyframe_at is None:
                    stats.first_keyframe_at = now
                    self._changed.set()
        else:
            stats.frames += 1

    def _on_rtcp(self, data: bytes, now: float) -> None:
        try:
            messages = P.parse_rtcp(data)
        except ValueError:
            return
        for msg in messages:
            if isinstance(msg, P.SenderReport | P.ReceiverReport):
                for block in msg.reports:
                    for sender in self.senders:
                        if sender.ssrc == block.ssrc:
                            sender.reports.append(block)
                            del sender.reports[:-8]
                    sent_at = self._sr_sent.get(block.lsr) if block.lsr else None
                    if sent_at is not None and self.gcc is not None:
                        self.gcc.on_rtt(now, max(0.0, now - sent_at - block.dlsr / 65536))
            if isinstance(msg, P.TransportFeedback):
                self._on_transport_feedback(msg, now)
            if isinstance(msg, P.SenderReport):
                for t in self.tracks.values():
                    if t.ssrc == msg.ssrc and t.stats is not None:
                        t.stats.on_sender_report(msg.ntp, now)
            elif isinstance(msg, P.Pli | P.Fir) and self.video_track is not None:
                self.pli_received += 1
                for ssrc in [msg.media_ssrc] if isinstance(msg, P.Pli) else msg.media_ssrcs:
                    self.pli_by_ssrc[ssrc] = self.pli_by_ssrc.get(ssrc, 0) + 1
                # simulcast: a keyframe on every layer (they jump together), the asked one too
                self.video_track.request_keyframe()
            elif isinstance(msg, P.Remb):
                self.remb_received += 1
                video = self.video_track
                if video is not None and (not msg.ssrcs or any(
                        s.ssrc in msg.ssrcs for s in self.senders if s.kind == "video")):
                    video.on_remb(msg.bitrate, now)

    def _on_transport_feedback(self, msg: P.TransportFeedback, now: float) -> None:
        """The server's feedback on what we publish: the send-side estimate, which the video
        follows (its share: the estimate less what audio takes)."""
        history, gcc = self.twcc_out, self.gcc
        if history is None or gcc is None:
            return
        results = history.match(msg)
        if not results:
            return
        self.feedback_received += 1
        gcc.on_feedback(now, results)
        estimate = gcc.estimate_kbps(now)
        video = self.video_track
        if estimate is not None and video is not None:
            audio = AUDIO_SHARE_KBPS if self.publish_audio else 0
            video.on_estimate(max(0.0, estimate - audio) * 1000, now)

    async def _run_rtcp(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._wire is None:
                continue
            now = time.monotonic()
            parts = []
            for sender in self.senders:  # an SR per published stream, then RRs
                sr = sender.sender_report(time.time())
                if sr is not None:
                    parts.append(P.build_sr(sr))
                    self._sr_sent[(sr.ntp >> 16) & 0xFFFFFFFF] = now
                    if len(self._sr_sent) > 16:
                        del self._sr_sent[next(iter(self._sr_sent))]
            blocks = [t.stats.report(t.ssrc, now) for t in self.tracks.values()
                      if t.stats is not None and t.ssrc is not None]
            if blocks:
                parts.append(P.build_rr(P.ReceiverReport(self.rtcp_ssrc, blocks[:31])))
            if self.send_remb:
                remb = self._remb(now)
                if remb is not None:
                    parts.append(remb)
            if parts:
                self._wire.send_rtcp(b"".join(parts))

    def _note_twcc(self, data: bytes, now: float) -> None:
        """Record the transport-wide sequence number of a packet (its clear header)."""
        seq = transport_seq(data, self._twcc_id or 0)
        if seq is not None and self.twcc is not None:
            self.twcc.add(seq, self._rx_time.at or now)

    async def _run_twcc(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if self._wire is None or self.twcc is None:
                continue
            media = next((t.ssrc for t in self.tracks.values() if t.ssrc is not None), 0)
            for packet in self.twcc.feedback(media):
                self._wire.send_rtcp(packet)

    def _remb(self, now: float) -> bytes | None:
        """Update the receive-side estimate; a REMB for the streams received, if any."""
        expected = received = 0
        ssrcs = []
        probe_alive = False
        for t in self.tracks.values():
            st, ssrc = t.stats, t.ssrc
            if st is None or ssrc is None or not st.started:
                continue
            ssrcs.append(ssrc)
            probe_alive |= ssrc == self._probe_ssrc
            prev = self._loss_prev.get(ssrc)
            if prev is not None and prev[0] is st:
                expected += st.expected - prev[1]
                received += st.received - prev[2]
            self._loss_prev[ssrc] = (st, st.expected, st.received)
        if not probe_alive:
            self._probe_ssrc = None  # the next audio packet's stream becomes the probe
        transit = self._probe_transit
        self._probe_transit = float("inf")
        exp_total = self._loss_total[0] + expected
        rec_total = self._loss_total[1] + received
        self._loss_total = (exp_total, rec_total)
        bps = self.estimate.update(now, self._rx_bytes, exp_total, rec_total,
                                   transit * 1000 if transit != float("inf") else None)
        if not ssrcs:
            return None
        self.remb_sent += 1
        self.remb_bps = bps
        return P.build_remb(self.rtcp_ssrc, bps, ssrcs[:255])

    # -- views ------------------------------------------------------------------------------------
    def received_from(self, participant: str, kind: str) -> TrackStats | None:
        for t in self.tracks.values():
            if t.participant == participant and t.kind == kind:
                return t
        return None

    def packets_sent(self) -> int:
        return sum(s.packets for s in self.senders)

    # -- leaving ------------------------------------------------------------------------------------
    async def leave(self) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        move = self._move_task
        if move is not None:
            move.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await move
        await self._drop_socket()
        await self._stop_tasks()
        if self._pc is not None:
            await self._pc.close()
        if self._session is not None:
            await self._session.close()

    async def vanish(self) -> None:
        """Drop the signaling socket without a word (no ``leave``): an abrupt disconnect."""
        await self.close()

    async def go_silent(self) -> None:
        """Vanish as a peer whose network went away: no more media, RTCP or consent answers, the
        media sockets closed without a DTLS close or an RTCP BYE, and the signaling socket left
        open but unread (its heartbeat pings go unanswered) with no close frame. Only the
        server's own timers can tell. ``close`` frees what is left here."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._stop_tasks()
        if self._pc is not None and self._hooked:
            glue.close_sockets_silently(glue.ice_connection(
                glue.dtls_of(self._pc.getTransceivers()[0])))

    @property
    def signaling_lost(self) -> bool:
        """The signaling socket's connection is gone (closed by the server, or reset), whether or
        not anyone read it (after ``go_silent``: the server noticed and closed it)."""
        return self._ws is None or self._ws.get_extra_info("socket") is None


def ws_endpoint(url: str) -> str:
    """The signaling WebSocket of the node at ``url`` (http(s)://host:port)."""
    base = url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{base}/v1/ws"


def redirect_url(url: object) -> str | None:
    """A ``redirect``'s ``url`` when it is a ws(s):// URL with a host; None otherwise."""
    if not isinstance(url, str):
        return None
    try:
        parsed = yarl.URL(url)
    except (TypeError, ValueError):
        return None
    if parsed.scheme not in ("ws", "wss") or not parsed.host or parsed.user is not None:
        return None
    return url


def http_base(ws_url: str) -> str:
    """http(s)://host:port of a ws(s):// URL."""
    parsed = yarl.URL(ws_url)
    scheme = "https" if parsed.scheme in ("wss", "https") else "http"
    return str(parsed.with_scheme(scheme).origin())


def transport_seq(data: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number in an RTP packet's one-byte header extensions, if any."""
    if not data[0] & 0x10:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if len(data) < start + 4 or data[start:start + 2] != b"\xbe\xde":
        return None
    i = start + 4
    end = min(len(data), i + 4 * ((data[start + 2] << 8) | data[start + 3]))
    while i < end:
        byte = data[i]
        if byte == 0:
            i += 1
            continue
        if byte >> 4 == ext_id:
            return (data[i + 1] << 8) | data[i + 2] if i + 2 < end else None
        if byte >> 4 == 15:
            return None
        i += 2 + (byte & 0x0F)
    return None


def accept_transport_cc(offer: aiortc_sdp.SessionDescription, answer: str) -> str:
    """The answer with the offer's transport-cc extension and feedback kept on every m-line that
    offered them (aiortc answers only the extensions it knows)."""
    head, *sections = answer.split("\r\nm=")
    out = [head]
    for media, section in zip(offer.media, sections, strict=False):
        lines = section.split("\r\n")
        ext = next((e for e in media.rtp.headerExtensions if e.uri == URI_TRANSPORT_CC), None)
        if ext is not None and f"a=extmap:{ext.id} {URI_TRANSPORT_CC}" not in lines:
            fb = {c.payloadType for c in media.rtp.codecs if c.payloadType is not None
                  and any(f.type == "transport-cc" for f in c.rtcpFeedback)}
            answered = {int(line.split(":", 1)[1].split()[0]) for line in lines
                        if line.startswith("a=rtpmap:")}
            extra = [f"a=extmap:{ext.id} {URI_TRANSPORT_CC}"]
            extra += [f"a=rtcp-fb:{pt} transport-cc" for pt in sorted(fb & answered)]
            at = len(lines) - 1 if lines and lines[-1] == "" else len(lines)
            lines[at:at] = extra
        out.append("\r\n".join(lines))
    return "\r\nm=".join(out)
