"""One WebRTC peer connection on the server side, always the offerer, media pipeline switched off.

The first offer has the two m-lines a client publishes on (audio then video, server ``recvonly``);
every forwarded track gets a ``sendonly`` m-line. aiortc cannot remove m-lines, so a freed one
goes ``inactive`` and is recycled for the next track of its kind: the SDP stays bounded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from sfu.errors import NegotiationError
from sfu.transport import aiortc_glue as glue
from sfu.transport.packets import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_REPAIRED_RID,
    URI_RID,
    URI_TRANSPORT_CC,
)
from sfu.transport.simulcast import RIDS
from sfu.transport.transportcc import EXT_TRANSPORT_CC

log = logging.getLogger(__name__)

CLOCK_RATES = {"audio": 48000, "video": 90000}
PUBLISHING = ("sendonly", "sendrecv")  # answered directions of an m-line the client publishes on
_EXT_NAMES = {URI_MID: "mid", URI_AUDIO_LEVEL: "audio_level", URI_ABS_SEND_TIME: "abs_send_time",
              URI_RID: "rid", URI_REPAIRED_RID: "repaired_rid"}
EXT_RID = 10  # the ids the server offers the RID extensions under (aiortc uses 1-3, 5 is ours)
EXT_REPAIRED_RID = 11


@dataclass
class SendSlot:
    """A sending m-line: its SSRC is fixed for the life of the peer, its source is not."""

    kind: str
    transceiver: RTCRtpTransceiver
    ssrc: int
    in_use: bool = True

    @property
    def mid(self) -> str | None:
        mid: str | None = self.transceiver.mid
        return mid


@dataclass
class PublishInfo:
    """What an answer says about one m-line the client publishes on."""

    kind: str
    mid: str
    active: bool
    ssrc: int | None
    rtx_ssrc: int | None
    payload_type: int
    ext_ids: dict[str, int] = field(default_factory=dict)
    rids: list[str] = field(default_factory=list)  # simulcast layers, lowest first; [] none


@dataclass
class AnswerInfo:
    publish: dict[str, PublishInfo]  # kind -> info
    payload_types: dict[str, dict[str, int]]  # mid -> codec name -> payload type
    transport_cc: int | None = None  # the transport-wide sequence number's id, when accepted
    transport_cc_in: int | None = None  # ... on the m-lines the client publishes on


def accepted_transport_cc(parsed: aiortc_sdp.SessionDescription,
                          directions: tuple[str, ...] = ("recvonly",)) -> int | None:
    """The id of the transport-wide sequence number extension when the answer accepts it: on
    every m-line whose answered direction is one of ``directions`` (``recvonly``: what the
    client receives; ``sendonly``/``sendrecv``: what it publishes), with one id throughout.
    Else None (an aiortc answerer does not accept it by itself; Chromium does)."""
    ids: set[int] = set()
    for media in parsed.media:
        if media.direction not in directions:
            continue
        found = [e.id for e in media.rtp.headerExtensions if e.uri == URI_TRANSPORT_CC]
        if not found:
            return None
        ids.update(found)
    return ids.pop() if len(ids) == 1 else None


def offer_simulcast_extensions(parsed: aiortc_sdp.SessionDescription) -> None:
    """Offer the RID and repaired-RID header extensions on the video m-line the client
    publishes on (the first video m-line, ``recvonly`` here). Done on the parsed offer before
    ``setLocalDescription``, like transport-cc: aiortc keeps extensions it does not know."""
    media = next((m for m in parsed.media if m.kind == "video"), None)
    if media is None or media.direction != "recvonly":
        return
    extensions = media.rtp.headerExtensions
    for ext_id, uri in ((EXT_RID, URI_RID), (EXT_REPAIRED_RID, URI_REPAIRED_RID)):
        if any(e.id == ext_id and e.uri != uri for e in extensions):
            raise ValueError(f"extension id {ext_id} is already used in aiortc's offer")
        if not any(e.uri == uri for e in extensions):
            extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


def _sections(sdp: str) -> list[str]:
    """The SDP text cut before each ``m=`` line: the session part, then one per m-line."""
    return re.split(r"(?m)^(?=m=)", sdp)


def offer_simulcast_rids(sdp: str) -> str:
    """Add ``a=rid:<rid> recv`` for each of :data:`RIDS` and ``a=simulcast:recv q;h;f`` to the
    first video m-line (lowest layer first). aiortc's SDP model has no RIDs: the text it made
    is extended after ``setLocalDescription``, and only the copy sent to the client has them."""
    parts = _sections(sdp)
    for index, part in enumerate(parts):
        if part.startswith("m=video"):
            eol = "\r\n" if part.endswith("\r\n") else "\n"
            lines = [f"a=rid:{rid} recv" for rid in RIDS] + [f"a=simulcast:recv {';'.join(RIDS)}"]
            parts[index] = part + eol.join(lines) + eol
            break
    return "".join(parts)


def answered_rids(sdp: str) -> list[str]:
    """The simulcast layers an answer's first video m-line sends (``a=simulcast:send``), among
    those offered, lowest first; [] when it sends one stream. A layer the answer marks paused
    (``~h``) is kept: its sender may enable it later."""
    for part in _sections(sdp):
        if not part.startswith("m=video"):
            continue
        for line in part.splitlines():
            if line.startswith("a=simulcast:"):
                fields = line[len("a=simulcast:"):].split()
                if len(fields) >= 2 and fields[0] == "send":
                    named = {alt.lstrip("~") for layer in fields[1].split(";")
                             for alt in layer.split(",")}
                    rids = [rid for rid in RIDS if rid in named]
                    return rids if len(rids) >= 2 else []
        return []
    return []


def _codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    wanted = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}[kind]
    chosen = [c for c in caps if c.mimeType in wanted]
    if kind == "video":  # keep only the rtx that goes with VP8 (it is the first one listed)
        vp8 = [c for c in chosen if c.mimeType == "video/VP8"]
        rtx = [c for c in chosen if c.mimeType == "video/rtx"][:1]
        chosen = vp8 + rtx
    return chosen


class WebRtcPeer:
    def __init__(self, *, ice: glue.IceSettings, ice_servers: list[RTCIceServer],
                 on_rtp: glue.RtpHandler, on_rtcp: glue.RtcpHandler,
                 on_state: Callable[[str], None], clock: Callable[[], float],
                 transport_cc: bool = True, simulcast: bool = False,
                 on_drop: Callable[[str], None] | None = None) -> None:
        self._pc = RTCPeerConnection(RTCConfiguration(
            iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self._connects = glue.ConnectTasks(self._pc)
        self._on_state = on_state
        self._pc.on("connectionstatechange", self._state_changed)
        self.publish: dict[str, RTCRtpTransceiver] = {}
        self.slots: list[SendSlot] = []
        for kind in ("audio", "video"):
            self.publish[kind] = self._transceiver(kind, "recvonly")
        self.dtls = glue.dtls_of(self.publish["audio"])
        self.rx_time = glue.RxTime()  # the kernel's receive time of the datagram being handled
        glue.install_gatherer(glue.ice_connection(self.dtls), ice, self.rx_time, on_drop)
        glue.hook_dtls(self.dtls, on_rtp, on_rtcp, clock, on_drop=on_drop)
        self.wire = glue.WireSender(self.dtls)
        self.rtcp_ssrc = glue.sender_ssrcs(self.publish["audio"])[0]
        self._offer_mids: list[tuple[str, str]] = []
        self._transport_cc = transport_cc  # offer transport-wide congestion control
        self._simulcast = simulcast  # offer to receive the client's video as simulcast
        self.closed = False

    def _transceiver(self, kind: str, direction: str) -> RTCRtpTransceiver:
        transceiver = self._pc.addTransceiver(kind, direction=direction)
        transceiver.setCodecPreferences(_codec_preferences(kind))
        glue.disable_media_pipeline(transceiver)
        return transceiver

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        if state != "connected":
            self.wire.reset()
        self._on_state(state)

    # -- sending m-lines ---------------------------------------------------------------------
    def acquire_slot(self, kind: str, stream_id: str, track_id: str) -> SendSlot:
        slot = next((s for s in self.slots if s.kind == kind and not s.in_use), None)
        if slot is None:
            transceiver = self._transceiver(kind, "sendonly")
            slot = SendSlot(kind, transceiver, glue.sender_ssrcs(transceiver)[0])
            self.slots.append(slot)
        else:
            slot.in_use = True
            slot.transceiver.direction = "sendonly"
        glue.set_stream_id(slot.transceiver, stream_id, track_id)
        return slot

    def release_slot(self, slot: SendSlot) -> None:
        slot.in_use = False
        slot.transceiver.direction = "inactive"

    # -- negotiation ----------------------------------------------------------------------
    async def create_offer(self) -> str:
        offer = await self._pc.createOffer()
        if self._transport_cc:
            offer = RTCSessionDescription(
                sdp=glue.offer_transport_cc(offer.sdp, EXT_TRANSPORT_CC, URI_TRANSPORT_CC),
                type=offer.type)
        if self._simulcast:
            parsed = aiortc_sdp.SessionDescription.parse(offer.sdp)
            offer_simulcast_extensions(parsed)
            offer = RTCSessionDescription(sdp=str(parsed), type=offer.type)
        await self._pc.setLocalDescription(offer)
        description = self._pc.localDescription
        parsed = aiortc_sdp.SessionDescription.parse(description.sdp)
        self._offer_mids = [(m.kind, m.rtp.muxId) for m in parsed.media]
        sdp: str = description.sdp
        if self._simulcast:
            sdp = offer_simulcast_rids(sdp)
        return sdp

    async def apply_answer(self, sdp: str) -> AnswerInfo:
        if self._pc.signalingState != "have-local-offer":
            raise NegotiationError("no offer is waiting for an answer")
        try:
            parsed = aiortc_sdp.SessionDescription.parse(sdp)
        except Exception as exc:  # noqa: BLE001 - aiortc's parser raises many types for bad SDP
            # (StopIteration for an unknown payload type, AttributeError, AssertionError ...)
            raise NegotiationError(f"malformed SDP: {exc or type(exc).__name__}") from exc
        got = [(m.kind, m.rtp.muxId) for m in parsed.media]
        if got != self._offer_mids:
            raise NegotiationError(
                f"answer m-lines {got} do not match the offer's {self._offer_mids}")
        for media in parsed.media:
            if media.ice is None or not media.ice.usernameFragment or media.dtls is None \
                    or not media.dtls.fingerprints:
                if media.direction != "inactive" or media is parsed.media[0]:
                    raise NegotiationError(f"m-line {media.rtp.muxId} lacks ICE or DTLS parameters")
            if media.direction not in ("sendonly", "recvonly", "sendrecv", "inactive"):
                raise NegotiationError(f"m-line {media.rtp.muxId} has no direction")
        info = self._describe(parsed, answered_rids(sdp) if self._simulcast else [])
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many types for a bad answer
            raise NegotiationError(f"answer rejected: {exc}") from exc
        return info

    def _describe(self, parsed: aiortc_sdp.SessionDescription, rids: list[str]) -> AnswerInfo:
        publish: dict[str, PublishInfo] = {}
        pts: dict[str, dict[str, int]] = {}
        for index, media in enumerate(parsed.media):
            names: dict[str, int] = {}
            for codec in media.rtp.codecs:
                if codec.payloadType is not None:
                    names.setdefault(codec.name.lower(), codec.payloadType)
            pts[media.rtp.muxId] = names
            if index >= 2:
                continue
            kind = media.kind
            main = names.get("opus" if kind == "audio" else "vp8")
            active = media.direction in ("sendonly", "sendrecv")
            if active and main is None:
                raise NegotiationError(f"m-line {media.rtp.muxId} publishes without Opus/VP8")
            ssrc = rtx_ssrc = None
            for group in media.ssrc_group:
                if group.semantic == "FID" and len(group.items) == 2:
                    ssrc, rtx_ssrc = int(group.items[0]), int(group.items[1])
            if ssrc is None and media.ssrc:
                ssrc = int(media.ssrc[0].ssrc)
            ext_ids = {_EXT_NAMES[e.uri]: e.id for e in media.rtp.headerExtensions
                       if e.uri in _EXT_NAMES}
            simulcast = rids if kind == "video" and "rid" in ext_ids else []
            publish[kind] = PublishInfo(kind, media.rtp.muxId, active, ssrc, rtx_ssrc,
                                        main or 0, ext_ids, simulcast)
        if not self._transport_cc:
            return AnswerInfo(publish, pts)
        return AnswerInfo(publish, pts, accepted_transport_cc(parsed),
                          accepted_transport_cc(parsed, PUBLISHING))

    async def add_ice_candidate(self, candidate: str, sdp_mid: str | None) -> None:
        """Trickled candidates: the peer-reflexive path makes them optional; parse and add."""
        from aiortc.sdp import candidate_from_sdp

        text = candidate[len("candidate:"):] if candidate.startswith("candidate:") else candidate
        if not text:
            return
        try:
            parsed = candidate_from_sdp(text)
        except Exception as exc:  # noqa: BLE001 - aiortc's parser asserts on a short line
            raise NegotiationError(f"malformed candidate: {exc or type(exc).__name__}") from exc
        if sdp_mid is None and self._offer_mids:
            sdp_mid = self._offer_mids[0][1]  # with BUNDLE every m-line shares one transport
        parsed.sdpMid = sdp_mid
        await self._pc.addIceCandidate(parsed)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wire.reset()
        await self._connects.close()
        await self._pc.close()
