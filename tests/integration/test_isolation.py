"""Two consultations at once: not one packet of one reaches the other, and neither patient learns
that the other exists.

Two patients enter the waiting area of one clinic over HTTP; a clinician joins each; all four are
real clients over real UDP. Every client notes the SSRC of every RTP packet and every SSRC named
in every RTCP packet it receives, before the client's own filtering (which drops what it was not
told about). Each SSRC must belong to its own call: an m-line whose ``tracks`` entry names the
other participant of its call (RTP), or its own call's streams and the server's RTCP sender
towards it (RTCP). The check is shown to catch a foreign SSRC on the same data (negative control).
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass

import aiohttp

from sfu.client.client import Client
from sfu.transport import packets as P
from tests.integration.faultbed import fault_bed
from tests.integration.helpers import close_all, receives_everyone, wait_for
from tests.integration.test_waiting_area import enter

# what a patient may be told at all: no waiting-area view, nothing about other spaces
PATIENT_MESSAGES = {"authenticated", "joined", "tracks", "offer", "participant_joined", "quality",
                    "video_layers", "publish_layers"}


class RecordingClient(Client):
    """The real client, noting every SSRC that reaches it (RTP and RTCP) before it filters."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rtp_ssrcs: Counter[int] = Counter()
        self.rtcp_ssrcs: Counter[int] = Counter()

    def _on_rtp(self, data: bytes, now: float) -> None:
        if len(data) >= 12:
            self.rtp_ssrcs[struct.unpack_from("!I", data, 8)[0]] += 1
        super()._on_rtp(data, now)

    def _on_rtcp(self, data: bytes, now: float) -> None:
        for ssrc in rtcp_ssrcs(data):
            self.rtcp_ssrcs[ssrc] += 1
        super()._on_rtcp(data, now)


def rtcp_ssrcs(data: bytes) -> list[int]:
    """Every SSRC a compound RTCP packet names: each packet's first (sender) SSRC, raw, whatever
    its type, and those in report blocks, feedback targets and REMB lists."""
    out = []
    at = 0
    while at + 8 <= len(data):
        out.append(struct.unpack_from("!I", data, at + 4)[0])
        at += 4 * (struct.unpack_from("!H", data, at + 2)[0] + 1)
    try:
        messages = P.parse_rtcp(data)
    except ValueError:
        return out
    for m in messages:
        if isinstance(m, P.SenderReport | P.ReceiverReport):
            out += [b.ssrc for b in m.reports]
        elif isinstance(m, P.Nack | P.Pli | P.TransportFeedback):
            out.append(m.media_ssrc)
        elif isinstance(m, P.Fir):
            out += m.media_ssrcs
        elif isinstance(m, P.Remb):
            out += m.ssrcs
    return out


def sdp_ssrcs(sdp: str) -> dict[str, set[int]]:
    """mid -> the SSRCs an SDP announces on that m-line (a=ssrc, RTX included)."""
    out: dict[str, set[int]] = {}
    mid = ""
    for line in sdp.splitlines():
        if line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=ssrc:"):
            out.setdefault(mid, set()).add(int(line[7:].split()[0]))
    return out


@dataclass
class View:
    """What one client was told: which SSRCs carry whose media, and its own SSRCs."""

    client: RecordingClient

    def sources(self) -> dict[int, str]:
        """SSRC -> participant whose media the server announced on it (every offer so far)."""
        owner: dict[str, str] = {}
        ssrcs: dict[str, set[int]] = {}
        for m in self.client.messages:
            if m["type"] == "tracks":
                owner.update({t["mid"]: t["participant"] for t in m["tracks"]})
            elif m["type"] == "offer":
                for mid, found in sdp_ssrcs(m["sdp"]).items():
                    ssrcs.setdefault(mid, set()).update(found)
        return {s: owner[mid] for mid, found in ssrcs.items() if mid in owner for s in found}

    def call_ssrcs(self) -> set[int]:
        """Every SSRC of this client's own call as seen from it: what the server offered it
        (forwarded streams, its RTCP sender) and what it publishes."""
        offered = {s for m in self.client.messages if m["type"] == "offer"
                   for found in sdp_ssrcs(m["sdp"]).values() for s in found}
        pc = self.client._pc
        mine = set() if pc is None else {
            s for found in sdp_ssrcs(pc.localDescription.sdp).values() for s in found}
        return offered | mine | {s.ssrc for s in self.client.senders}


def foreign(seen: Counter[int], allowed: set[int]) -> dict[int, int]:
    """SSRCs seen that are not allowed, with their packet counts (empty: isolated)."""
    return {ssrc: n for ssrc, n in seen.items() if ssrc not in allowed}


def check_call(view: View, other: RecordingClient) -> None:
    """``view``'s client received RTP only from ``other`` and RTCP only about its own call."""
    c = view.client
    sources = view.sources()
    from_other = {s for s, p in sources.items() if p == other.participant}
    assert set(sources.values()) == {other.participant}, sources
    assert not foreign(c.rtp_ssrcs, from_other), foreign(c.rtp_ssrcs, from_other)
    assert c.rtcp_ssrcs and not foreign(c.rtcp_ssrcs, view.call_ssrcs()), \
        foreign(c.rtcp_ssrcs, view.call_ssrcs())
    # per source: never more of a kind than the source published (nobody else's packets mixed in)
    for kind in ("audio", "video"):
        got = c.received_from(other.participant or "", kind)
        sent = sum(s.packets for s in other.senders if s.kind == kind)
        assert got is not None and 0 < got.packets <= sent, (kind, got, sent)


async def test_two_consultations_share_no_packet_and_no_word(token, clip):
    async with fault_bed(token, clip) as bed:
        server = bed.server
        names = {"a": "Alice Anders", "b": "Bob Brenner"}
        entries = {k: await enter(server, n) for k, n in names.items()}
        staff_names = {"a": "Dr Alpha Aalto", "b": "Dr Beta Berg"}
        calls: dict[str, list[RecordingClient]] = {}
        try:
            for k in ("a", "b"):
                patient = RecordingClient(server.url, entries[k]["token"], clip=clip)
                staff = RecordingClient(server.url, token(sub=f"dr-{k}", name=staff_names[k]), clip=clip)
                calls[k] = [patient, staff]
                await patient.join({"space": entries[k]["space"]})
                await staff.join({"space": entries[k]["space"]})
            everyone = [*calls["a"], *calls["b"]]
            for pair in calls.values():
                await wait_for(receives_everyone(pair), timeout=15)
            # a window of several seconds with media flowing in both calls
            start = [Counter(c.rtp_ssrcs) for c in everyone]
            await wait_for(lambda: all(
                sum((c.rtp_ssrcs - s).values()) > 400 for c, s in zip(everyone, start, strict=True)),
                timeout=20)
            window = [c.rtp_ssrcs - s for c, s in zip(everyone, start, strict=True)]
            assert all(len(w) >= 2 for w in window), window  # audio and video in every client

            for k, other_k in (("a", "b"), ("b", "a")):
                patient, staff = calls[k]
                check_call(View(patient), staff)
                check_call(View(staff), patient)
                mine = View(patient).call_ssrcs() | View(staff).call_ssrcs()
                theirs = View(calls[other_k][0]).call_ssrcs() | View(calls[other_k][1]).call_ssrcs()
                assert not mine & theirs
                # negative control: the same check on the same data catches a foreign SSRC ...
                allowed = {s for s, p in View(patient).sources().items() if p == staff.participant}
                leaked = patient.rtp_ssrcs + Counter({next(iter(theirs)): 1})
                assert foreign(leaked, allowed) == {next(iter(theirs)): 1}
                # ... and flags everything the other call's patient received
                seen_there = calls[other_k][0].rtp_ssrcs
                assert foreign(seen_there, allowed) == dict(seen_there)

            # signaling: not a word of the other space reaches a patient
            for k, other_k in (("a", "b"), ("b", "a")):
                patient, staff = calls[k]
                other_patient, other_staff = calls[other_k]
                told = json.dumps(patient.messages)
                for secret in (entries[other_k]["space"], other_patient.participant,
                               other_staff.participant, names[other_k], staff_names[other_k],
                               "Alice" if k == "b" else "Bob", "Beta" if k == "a" else "Alpha"):
                    assert secret and secret not in told, secret
                assert {m["type"] for m in patient.messages} <= PATIENT_MESSAGES, \
                    {m["type"] for m in patient.messages}
                joined = next(m for m in patient.messages if m["type"] == "joined")
                assert joined["participants"] == []
                assert [m["participant"]["id"] for m in patient.messages
                        if m["type"] == "participant_joined"] == [staff.participant]
                # which layer it gets of whose video: only its own call's other participant
                assert {pid for m in patient.messages if m["type"] == "video_layers"
                        for pid in m["layers"]} <= {staff.participant}
                # the waiting area (the other space, its name, how many there are) is not theirs
                async with aiohttp.ClientSession() as http, http.get(
                        f"{server.url}/v1/clinics/demo/waiting-area",
                        headers={"Authorization": f"Bearer {entries[k]['token']}"}) as r:
                    body = await r.text()
                    assert r.status == 403, body
                    assert entries[other_k]["space"] not in body and names[other_k] not in body
                watcher = Client(server.url, entries[k]["token"], clip=clip)
                await watcher.connect()
                await watcher.send({"type": "watch", "waiting_area": True})
                refused = await watcher.wait_message(lambda m: m["type"] in ("error", "waiting_area"))
                await watcher.close()
                assert refused["type"] == "error" and refused["code"] == "forbidden", refused
        finally:
            await close_all([c for pair in calls.values() for c in pair])
        await bed.settled()
