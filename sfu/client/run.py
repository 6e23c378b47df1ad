"""Run ONE synthetic participant and report what it receives as JSON lines on stdout.

    python -m sfu.client.run --url http://10.77.5.1:8080 --token TOKEN --room team --seconds 30
    ip netns exec NS python -m sfu.client.run --url ... --ice-address 10.77.5.6 ...

It joins the target, stays ``--seconds`` (counted from ``joined``), then leaves. One JSON object
per line, each with ``event``, ``t`` (seconds since the process started, monotonic) and
``wall`` (``time.time()``, to line up several processes on one host):

* ``{"event": "joined", "participant": ..., "message": {...}}`` once admitted;
* ``{"event": "message", "message": {...}}`` for every signaling message but ``offer`` (and the
  ``joined``/``error`` already reported): ``quality``, ``participant_joined``, ``tracks`` ...;
* ``{"event": "stats", "sent_packets": N, "first_media_wall": W, "tracks": [...]}`` every
  ``--interval`` seconds (``first_media_wall``: when the first RTP packet arrived, or null), one
  entry per received track with *cumulative* counters: ``mid``, ``participant``, ``kind``,
  ``ssrc``, ``packets``, ``bytes``, ``frames`` (video: frames begun; audio: packets),
  ``keyframes``, ``expected`` and ``lost`` (RFC 3550, from the sequence numbers since the track's
  current SSRC started: a new SSRC restarts them), and ``rendition_kbps`` (the video rendition
  being published), ``frames_sent`` (video frames published so far), ``switches`` (rendition
  switches so far), ``remb_in`` (the last REMB the server sent for our video, bit/s),
  ``remb_out`` (the last REMB we sent, bit/s) and ``ice`` (the selected candidate pair:
  ``local_type`` such as ``host`` or ``relay``, ``local``, ``remote_type``, ``remote``; null
  before ICE selects one);
* ``{"event": "refused", "code": ..., "message": ...}`` when the join is refused (exit status 2);
* with ``--precall SECONDS`` instead of a target: its messages (``message`` lines, as below), then ``{"event": "precall_result", "result": {...}}``
  (the server's ``precall_result``) and nothing is joined;
* ``{"event": "error", ...}`` on any other failure (exit status 1);
* ``{"event": "left"}`` last.

SIGTERM / SIGINT end the run early (the participant still leaves).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sfu.client.client import Client, ClientError
from sfu.client.media import (
    DEFAULT_RENDITIONS_KBPS,
    ClipParams,
    default_clip_dir,
    load_clip,
    load_layers,
    load_renditions,
)

_T0 = time.monotonic()


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "t": round(time.monotonic() - _T0, 3), "wall": round(time.time(), 3),
            **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def track_stats(client: Client) -> list[dict[str, Any]]:
    out = []
    for t in client.tracks.values():
        rs = t.stats
        out.append({
            "mid": t.mid, "participant": t.participant, "kind": t.kind, "ssrc": t.ssrc,
            "packets": t.packets, "bytes": t.bytes, "frames": t.frames, "keyframes": t.keyframes,
            "expected": rs.expected if rs is not None and rs.started else 0,
            "received": rs.received if rs is not None else 0,
            "lost": max(0, rs.expected - rs.received) if rs is not None and rs.started else 0,
        })
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="http://host:port of the server")
    p.add_argument("--token", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--room", help="join this clinic room")
    target.add_argument("--space", help="join this waiting-area space")
    target.add_argument("--precall", type=float, metavar="SECONDS",
                        help="run only the pre-call link test (2-15 s), report its result, exit")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to stay after joined")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between stats lines")
    p.add_argument("--ice-address", action="append", default=[],
                   help="local address for ICE host candidates (repeatable; default 127.0.0.1)")
    p.add_argument("--join-timeout", type=float, default=20.0)
    p.add_argument("--no-video", action="store_true", help="publish audio only")
    p.add_argument("--no-audio", action="store_true", help="publish video only")
    p.add_argument("--clip-dir", default="", help="clip cache directory (default: SFU_CLIP_DIR "
                   "or ~/.cache/sfu-clip)")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--clip-kbps", type=int, default=500, help="video rate of the clip")
    add_adaptation_arguments(p, "--clip-kbps")
    p.add_argument("--simulcast", action="store_true",
                   help="publish simulcast (320x180, 640x360, 1280x720) when the server offers it")
    return p.parse_args(argv)


def parse_renditions(text: str) -> tuple[int, ...]:
    """``"150,300,600"`` -> (150, 300, 600); ``"off"`` (or empty) -> ()."""
    if text.strip().lower() in ("", "off", "none"):
        return ()
    try:
        kbps = tuple(sorted({int(k) for k in text.split(",")}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated kbit/s or 'off': {text}") from exc
    if any(k <= 0 for k in kbps):
        raise argparse.ArgumentTypeError(f"renditions must be positive: {text}")
    return kbps


def add_adaptation_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                             single_clip_flag: str) -> None:
    """``--renditions``, ``--start-kbps`` and ``--no-remb``: how a synthetic participant adapts
    like a browser (this CLI and the load tool share them)."""
    parser.add_argument("--renditions", type=parse_renditions,
                        default=",".join(map(str, DEFAULT_RENDITIONS_KBPS)),
                        help="video renditions in kbit/s a publisher switches between following "
                             f"the server's REMB, like an encoder ('off': one clip at "
                             f"{single_clip_flag})")
    parser.add_argument("--start-kbps", type=int, default=600,
                        help="publishers start with the highest rendition at most this")
    parser.add_argument("--no-remb", dest="remb", action="store_false",
                        help="send no REMB for what is received (receiver reports only)")


async def run(args: argparse.Namespace) -> int:
    directory = Path(args.clip_dir) if args.clip_dir else default_clip_dir()
    params = ClipParams(seconds=args.clip_seconds, video_kbps=args.clip_kbps)
    clip = load_clip(directory, params)
    renditions = load_renditions(directory, params, args.renditions) if args.renditions else None
    layers = load_layers(directory, params) if args.simulcast else None
    client = Client(args.url, args.token, clip=clip, publish_audio=not args.no_audio,
                    publish_video=not args.no_video, renditions=renditions, simulcast=layers,
                    start_kbps=args.start_kbps, send_remb=args.remb,
                    ice_addresses=tuple(args.ice_address) or ("127.0.0.1",))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    target = {"room": args.room} if args.room else {"space": args.space} if args.space else {}
    emit("start", target=target, url=args.url)
    status = 0
    reported = 0
    try:
        if args.precall is not None:
            try:
                result = await client.precall(seconds=args.precall, timeout=args.precall + 20)
            except ClientError as exc:
                emit("refused", code=exc.code, message=exc.message)
                return 2
            for m in client.messages:
                if m.get("type") != "offer":
                    emit("message", message=m)
            emit("precall_result", result=result)
            return 0
        try:
            joined = await client.join(target, timeout=args.join_timeout)
        except ClientError as exc:
            emit("refused", code=exc.code, message=exc.message)
            return 2
        emit("joined", participant=client.participant, message=joined, node=client.node_url,
             redirects=client.redirects)
        reported = len(client.messages)
        start = time.monotonic()
        next_stats = start + args.interval
        while not stop.is_set():
            now = time.monotonic()
            for m in client.messages[reported:]:
                if m.get("type") not in ("offer",):
                    emit("message", message=m)
            reported = len(client.messages)
            if now >= next_stats:
                firsts = [t.first_packet_at for t in client.tracks.values() if t.first_packet_at]
                first_media = (round(time.time() - (time.monotonic() - min(firsts)), 3)
                               if firsts else None)
                video = client.video_track
                emit("stats", sent_packets=client.packets_sent(), first_media_wall=first_media,
                     tracks=track_stats(client),
                     rendition_kbps=video.rendition_kbps if video else None,
                     frames_sent=video.frames_sent if video else 0,
                     switches=video.switches if video else 0,
                     remb_in=video.remb_bps if video else None, remb_out=client.remb_bps,
                     layers={s.rid: s.packets for s in client.senders if s.rid} or None,
                     publish_layers=client.publish_layers,
                     ice=client.selected_pair())
                next_stats += args.interval
            if now - start >= args.seconds or client.ended or (
                    client._reader is not None and client._reader.done()):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
        if client.ended:
            emit("ended", reason=client.ended)
    except Exception as exc:  # noqa: BLE001 - reported on stdout, the parent decides
        emit("error", error=f"{type(exc).__name__}: {exc}")
        status = 1
    finally:
        for m in client.messages[reported:]:
            if m.get("type") not in ("offer",):
                emit("message", message=m)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.leave(), 5)
        emit("left")
    return status


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
