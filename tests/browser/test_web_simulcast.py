"""The web client's side of simulcast (sfu/web/call.js), in Chromium, without a call.

The server's messages (docs/API.md, issue 12) are handed to an ``SfuCall`` whose peer connection
holds a real sender: three simulcast encodings (rids q, h, f, as Chromium makes them when it
answers ``a=simulcast:recv q;h;f``) or one. What the sender's ``getParameters`` says afterwards is
what the encoder does:

* ``publish_layers`` turns each encoding on or off by rid; the lowest stays on whatever it says,
  and a rid it does not name stays on; the lowest is sent at 100 kbit/s at most;
* in a call of four or more (small tiles), each layer Chromium sends is halved (a 640x480 camera:
  two layers, 160x120 and 320x240 instead of 320x240 and 640x480) and gets at most 15 frames/s,
  and back to Chromium's own sizes when the call shrinks; a single encoding is halved as before
  and ignores ``publish_layers``;
* ``video_layers`` (and the ``quality`` message's ``layers``) are kept on the call.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

SCENARIO_JS = """async () => {
  const { SfuCall } = await import("/static/call.js");
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  const pc = new RTCPeerConnection();
  const layered = pc.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly",
    sendEncodings: [{rid: "q", scaleResolutionDownBy: 4}, {rid: "h", scaleResolutionDownBy: 2},
                    {rid: "f"}]});
  const single = pc.addTransceiver(stream.getVideoTracks()[0].clone(), {direction: "sendonly"});
  await pc.setLocalDescription();
  const call = new SfuCall({token: "t", target: {room: "team"}, grid: document.createElement("div")});
  call.pc = pc;
  call.ownMids = new Set([layered.mid, single.mid]);
  const look = (t) => t.sender.getParameters().encodings.map((e) => ({
    rid: e.rid || null, active: e.active, scale: e.scaleResolutionDownBy,
    fps: e.maxFramerate === undefined ? null : e.maxFramerate,
    bps: e.maxBitrate === undefined ? null : e.maxBitrate}));
  const out = {};
  await call.handle({type: "publish_layers", layers: {q: true, h: false, f: false}});
  out.onlyLowest = look(layered);
  await call.handle({type: "publish_layers", layers: {q: false, h: true}});
  out.lowestKept = look(layered);
  for (const id of ["a", "b", "c"]) call.participants.set(id, {id, name: id, role: "staff"});
  await call.fitSentVideo();
  out.fourLayered = look(layered);
  out.fourSingle = look(single);
  for (const id of ["b", "c"]) call.participants.delete(id);
  await call.fitSentVideo();
  out.twoLayered = look(layered);
  out.twoSingle = look(single);
  await call.handle({type: "video_layers",
                     layers: {a: {rid: "q", width: 320, height: 240}, b: null}});
  await call.handle({type: "quality", level: "good", participant: "s",
                     layers: {b: {rid: "h", width: 640, height: 480}}});
  out.layers = call.layers;
  call.finish();
  return out;
}"""


async def test_the_web_client_turns_layers_on_and_off_as_the_server_says(
        server: Any, browser: Any) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/c/demo/rooms/team")  # no token: the page only says so
    out = await page.evaluate(SCENARIO_JS)

    def states(encodings: list[dict[str, Any]]) -> dict[str, bool]:
        return {e["rid"]: e["active"] for e in encodings}

    assert states(out["onlyLowest"]) == {"q": True, "h": False, "f": False}
    assert states(out["lowestKept"]) == {"q": True, "h": True, "f": True}
    # the lowest layer is what a weak downlink gets of everyone: capped so that two fit 500 kbit/s
    assert [e["bps"] for e in out["onlyLowest"]] == [100_000, None, None]
    assert [e["bps"] for e in out["fourSingle"]] == [None]
    assert [(e["scale"], e["fps"]) for e in out["fourLayered"]] == [(4, 15), (2, 15), (2, 15)]
    assert [(e["scale"], e["fps"]) for e in out["twoLayered"]] == [(None, None)] * 3
    assert [(e["active"], e["scale"], e["fps"]) for e in out["fourSingle"]] == [(True, 2, 15)]
    assert [(e["active"], e["scale"], e["fps"]) for e in out["twoSingle"]] == [(True, 1, None)]
    assert out["layers"] == {"a": {"rid": "q", "width": 320, "height": 240},
                             "b": {"rid": "h", "width": 640, "height": 480}}
    assert not errors
