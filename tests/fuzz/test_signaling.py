"""Fuzzing the WebSocket signaling (sfu/service/signaling.py) against a real server: any text
(JSON or not), binary frames, and every message type the server accepts with any fields. Each
frame gets an answer: anything that is not a usable message an ``error`` with a code and a
message; the session stays usable (a ``ping`` after it is answered) unless it was told why it
closes; the server logs no traceback and is left with no call once the socket is gone."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from hypothesis import example, given
from hypothesis import strategies as st

from sfu.auth import mint_token
from tests.conftest import SECRET
from tests.fuzz.budget import budget
from tests.fuzz.live import LiveServer
from tests.fuzz.test_http import deep, json_values

TYPES = ["auth", "join", "answer", "candidate", "leave", "watch", "ping", "precall",
         "precall_stats", "precall_upload"]
ANSWERS = {"error", "pong", "authenticated", "joined", "tracks", "offer", "participant_joined",
           "participant_left", "quality", "ended", "waiting_area", "precall_result",
           "precall_upload", "precall_uploaded"}
LIMIT = 65536  # server.max_message_bytes
STAFF = mint_token(SECRET, sub="dr", role="staff", clinic="demo")
TOKENS = [STAFF, mint_token(SECRET, sub="pt", role="patient", clinic="demo", space="sp_gone")]

field_values = st.one_of(json_values, st.sampled_from([
    "team", "demo", "sp_gone", {"room": "team"}, {"space": "sp_gone"}, {"room": ["team"]},
    "v=0\r\n", "candidate:1 1 udp 1 127.0.0.1 9 typ host", "candidate:", "0", STAFF, True,
    2, 15, 1e308, -0.0, "\ud800"]))
messages = st.builds(
    lambda kind, rest: {**rest, "type": kind},
    st.one_of(st.sampled_from(TYPES), st.text(max_size=10)),
    st.dictionaries(st.sampled_from(["target", "sdp", "candidate", "sdpMid", "token", "seconds",
                                     "outgoing_kbps", "data", "waiting_area", "clinic"]),
                    field_values, max_size=3))
frames = st.one_of(
    messages.map(lambda m: json.dumps(m)),
    json_values.map(json.dumps),
    st.text(max_size=80),
    st.binary(max_size=40),
    st.integers(1, 30_000).map(lambda n: deep(n).decode()),
    st.sampled_from(["", "null", "NaN", '{"type": NaN}', '{"type": "ping", "type": 1}',
                     "x" * 70_000]),
)




async def converse(live: LiveServer, token: str, sent: list[str | bytes]
                   ) -> list[tuple[str | bytes, list[dict[str, Any]], bool]]:
    """Each frame, then a ping: (frame, what came before the pong, whether the socket closed)."""
    out: list[tuple[str | bytes, list[dict[str, Any]], bool]] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{live.url.replace('http', 'ws')}/v1/ws?token={token}")
        try:
            for frame in sent:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                replies: list[dict[str, Any]] = []
                closed = False
                try:
                    await ws.send_str('{"type": "ping"}')
                except ConnectionError:
                    closed = True
                # a frame that is a ping is answered with a pong of its own
                pongs = 2 if (is_request(frame) or {}).get("type") == "ping" else 1
                while not closed:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        closed = True
                        break
                    reply = json.loads(msg.data)
                    if reply["type"] == "pong":
                        pongs -= 1
                        if not pongs:
                            break
                        continue
                    replies.append(reply)
                out.append((frame, replies, closed))
                if closed:
                    break
        finally:
            await ws.close()
    return out


async def settled(live: LiveServer) -> bool:
    for _ in range(100):
        if not live.server.sessions and not live.server.calls.by_key:
            return True
        await asyncio.sleep(0.05)
    return False


def is_request(frame: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    ok = isinstance(message, dict) and isinstance(message.get("type"), str) and len(frame) <= LIMIT
    return message if ok else None


@budget(40, fuzz=1500)
@given(st.sampled_from(TOKENS), st.lists(frames, min_size=1, max_size=6))
@example(STAFF, [deep(30_000).decode(), '{"type": "ping"}'])  # RecursionError ended the session
@example(STAFF, ['{"type": "ping"}', "", '{"type": "leave"}', '{"type": "auth"}'])  # two pongs
def test_every_frame_gets_an_answer_and_the_session_goes_on(live, no_traceback_logged, token, sent):
    for frame, replies, closed in live.run(converse(live, token, sent)):
        assert all(r["type"] in ANSWERS for r in replies), replies
        errors = [r for r in replies if r["type"] == "error"]
        assert all(isinstance(e["code"], str) and e["message"] for e in errors), errors
        request = is_request(frame)
        if len(frame) > LIMIT:  # refused by the WebSocket layer: closed with 1009 (too big)
            assert closed or [e["code"] for e in errors] == ["bad_request"], (len(frame), replies)
        elif request is None:  # not a message at all: bad_request, nothing else
            assert [e["code"] for e in errors] == ["bad_request"], (frame[:60], replies)
        if closed:  # only after saying why (1009 says the frame was too big), or asked to leave
            assert errors or len(frame) > LIMIT or (request or {}).get("type") == "leave" \
                or any(r["type"] == "ended" for r in replies), (frame[:60], replies)
    assert live.run(settled(live)), "a session or a call was left behind"
    assert not no_traceback_logged.records, no_traceback_logged.records
    assert not live.loop_errors, live.loop_errors
