"""How large a Chromium answer gets in a full call, against ``server.max_message_bytes``.

An aiortc offer shaped like the server's to one participant of a call of N (its own audio and video
m-lines first, then an audio and a video m-line per other participant, BUNDLE) is answered by
headless Chromium, publishing on its own m-lines as the web client does; prints the answer's SDP and
its ``answer`` message in bytes for each N::

    python -m bench.sdp_size --sizes 2,6,16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection

PAGE_SCRIPT = """async (offer) => {
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  await pc.setRemoteDescription({type: "offer", sdp: offer});
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const ts = pc.getTransceivers();
  const audio = ts.find(t => t.receiver.track.kind === "audio");
  const video = ts.find(t => t.receiver.track.kind === "video");
  await audio.sender.replaceTrack(stream.getAudioTracks()[0]); audio.direction = "sendonly";
  await video.sender.replaceTrack(stream.getVideoTracks()[0]); video.direction = "sendonly";
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  await new Promise(r => setTimeout(r, 500));
  const sdp = pc.localDescription.sdp;
  pc.close();
  return sdp;
}"""


async def server_like_offer(participants: int) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy="max-bundle"))  # type: ignore[call-arg]
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    for _ in range(participants - 1):
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,6,16")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=args.chromium, headless=True,
            args=["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        app = web.Application()  # getUserMedia needs a secure context: http on loopback is
        app.router.add_get("/", lambda _: web.Response(text="<html></html>",
                                                       content_type="text/html"))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        for n in (int(x) for x in args.sizes.split(",")):
            offer = await server_like_offer(n)
            answer = await page.evaluate(PAGE_SCRIPT, offer)
            message = json.dumps({"type": "answer", "sdp": answer}, separators=(",", ":"))
            print(f"call of {n:2}: offer {len(offer):6} B, answer {len(answer):6} B, "
                  f"answer message {len(message.encode()):6} B")
        await browser.close()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
