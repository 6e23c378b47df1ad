"""Fuzzing SDP answers and trickled candidates against a real server: a participant joins, a real
aiortc peer answers the server's offer, and the server is sent that answer mutated (lines cut,
repeated, swapped or edited, values changed, text cut off) or any text. Each is either taken or
refused with ``bad_request``; a refused answer changes nothing (the offer still waits, the
participant is still in the call, and the real answer is taken after it); no traceback."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from hypothesis import example, given
from hypothesis import strategies as st

from sfu.auth import mint_token
from tests.conftest import SECRET
from tests.fuzz.budget import budget
from tests.fuzz.live import LiveServer


@dataclass
class Negotiation:
    """One participant in the demo team room and the real answer to its pending offer."""

    http: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    pc: RTCPeerConnection
    answer: str
    participant: str

    @classmethod
    async def start(cls, live: LiveServer, sub: str) -> Negotiation:
        http = aiohttp.ClientSession()
        token = mint_token(SECRET, sub=sub, role="staff", clinic="demo")
        ws = await http.ws_connect(f"{live.url.replace('http', 'ws')}/v1/ws?token={token}")
        await ws.send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        offer = participant = None
        while offer is None:
            message = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            if message["type"] == "joined":
                participant = message["participant"]
            elif message["type"] == "offer":
                offer = message["sdp"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        # ICE credentials and DTLS fingerprint without setLocalDescription: this peer starts no
        # ICE of its own (closing it mid-connect would be its error, not the server's)
        answer = await pc.createAnswer()
        assert participant is not None
        return cls(http, ws, pc, answer.sdp, participant)

    async def send(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The replies to ``message`` (up to the pong of a ping sent after it)."""
        await self.ws.send_str(json.dumps(message))
        await self.ws.send_str('{"type": "ping"}')
        replies = []
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 10)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            reply = json.loads(msg.data)
            if reply["type"] == "pong":
                return replies
            replies.append(reply)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
        await self.pc.close()


def offer_waiting(live: LiveServer, participant: str) -> bool:
    async def look() -> bool:
        for call in live.server.calls.by_key.values():
            p = call.participants.get(participant)
            if p is not None:
                return bool(p.endpoint._offer_in_flight
                            and p.endpoint.peer._pc.signalingState == "have-local-offer")
        return False

    return live.run(look())


# A mutation is drawn before the answer it applies to is known: indexes are taken modulo its
# number of lines (or characters), so one strategy serves every negotiation.
Edit = tuple[str, int, int, str]
edits = st.lists(st.tuples(
    st.sampled_from(["cut", "repeat", "swap", "edit", "value", "number", "insert", "truncate"]),
    st.integers(0, 10_000), st.integers(0, 10_000),
    st.one_of(st.text(max_size=12), st.sampled_from(["0", "-1", "65536", "4294967296", "", " ",
                                                     "a=", "m=", "inactive", "sendrecv", "9999",
                                                     "UDP/TLS/RTP/SAVPF", "sha-256 00"]))),
    min_size=1, max_size=4)


def mutate(sdp: str, plan: list[Edit]) -> str:
    lines = sdp.split("\r\n")
    for op, i, j, text in plan:
        n = len(lines)
        a, b = i % n, j % n
        if op == "cut" and n > 1:
            del lines[a]
        elif op == "repeat":
            lines.insert(a, lines[a])
        elif op == "swap":
            lines[a], lines[b] = lines[b], lines[a]
        elif op == "edit" and lines[a]:
            k = j % len(lines[a])
            lines[a] = lines[a][:k] + text + lines[a][k + 1:]
        elif op == "value" and ":" in lines[a]:
            lines[a] = lines[a].split(":", 1)[0] + ":" + text
        elif op == "number":
            words = lines[a].split(" ")
            numeric = [k for k, w in enumerate(words) if w.isdigit()]
            if numeric:
                words[numeric[j % len(numeric)]] = text
                lines[a] = " ".join(words)
        elif op == "insert":
            lines.insert(a, text)
        elif op == "truncate":
            return "\r\n".join(lines)[: j % (len(sdp) + 1)]
    return "\r\n".join(lines)


# an fmtp for a payload type its m-line does not list: aiortc's parser raised StopIteration
# (not one of the four types caught), which ended the signaling session with a traceback
UNKNOWN_PT = ("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
              "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=fmtp:96 minptime=10\r\n")


def test_mutated_and_arbitrary_answers_are_taken_or_refused_and_a_refusal_changes_nothing(
        live, no_traceback_logged):
    state: dict[str, Any] = {"n": 0, "taken": 0, "refused": 0}
    state["neg"] = live.run(Negotiation.start(live, "dr-0"))

    @budget(40, fuzz=1500)
    @given(st.one_of(edits.map(lambda plan: ("mutated", plan)),
                     st.text(max_size=200).map(lambda text: ("text", text))))
    @example(("text", UNKNOWN_PT))
    def answer(case):
        neg: Negotiation = state["neg"]
        kind, value = case
        sdp = mutate(neg.answer, value) if kind == "mutated" else value
        replies = live.run(neg.send({"type": "answer", "sdp": sdp}))
        errors = [r for r in replies if r["type"] == "error"]
        assert all(e["code"] == "bad_request" and e["message"] for e in errors), errors
        if errors:
            state["refused"] += 1
            assert offer_waiting(live, neg.participant), "a refused answer changed the offer"
        else:  # taken: the next case answers a new participant's offer
            state["taken"] += 1
            live.run(neg.close())
            state["n"] += 1
            state["neg"] = live.run(Negotiation.start(live, f"dr-{state['n']}"))

    try:
        answer()
        neg = state["neg"]  # after everything refused, the real answer is taken
        assert not [r for r in live.run(neg.send({"type": "answer", "sdp": neg.answer}))
                    if r["type"] == "error"]
        assert not offer_waiting(live, neg.participant)
    finally:
        live.run(state["neg"].close())
    assert state["refused"] > 0
    assert not no_traceback_logged.records, no_traceback_logged.records
    assert not live.loop_errors, live.loop_errors


def test_trickled_candidates_of_any_text_are_taken_or_refused(live, no_traceback_logged):
    neg = live.run(Negotiation.start(live, "dr-trickle"))
    real = [line[2:] for line in neg.answer.split("\r\n") if line.startswith("a=candidate:")]
    real = real or ["candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"]

    @budget(40, fuzz=1500)
    @given(st.one_of(st.sampled_from(real), st.text(max_size=80),
                     st.builds(lambda c, plan: mutate(c.replace(" ", "\r\n"), plan).replace(
                         "\r\n", " "), st.sampled_from(real), edits)),
           st.one_of(st.none(), st.sampled_from(["0", "1", "9"]), st.text(max_size=4)))
    @example("candidate:1 1 udp", None)  # aiortc asserts 8 fields: AssertionError ended the session
    def candidate(text, mid):
        message: dict[str, Any] = {"type": "candidate", "candidate": text}
        if mid is not None:
            message["sdpMid"] = mid
        replies = live.run(neg.send(message))
        assert all(r["code"] == "bad_request" for r in replies if r["type"] == "error"), replies

    try:
        candidate()
        assert offer_waiting(live, neg.participant)  # candidates before the answer: still waits
    finally:
        live.run(neg.close())
    assert not no_traceback_logged.records, no_traceback_logged.records
    assert not live.loop_errors, live.loop_errors
