"""``make fuzz``'s coverage-guided half: atheris (libFuzzer for Python) on the parsers that read
bytes from outside, each target for a fixed time in a process of its own.

    python -m tests.fuzz.atheris_run [--seconds 60] [TARGET ...]

Targets: rtp, rtcp, receive (a real endpoint's RTP/RTCP receive path and its RTCP timer), stun
(a media port's ``FastStunProtocol`` with aioice's STUN handling behind it), json (``parse_json``: HTTP bodies and WebSocket
messages), config (TOML text through the config loader). A target fails on any exception other
than the parser's documented one; libFuzzer then writes the input to
``$TMPDIR/sfu-fuzz-crashes/TARGET-crash-*`` (replay: ``python -m tests.fuzz.atheris_run TARGET
FILE``). Each run starts from a seed corpus of valid inputs. Prints, per target, how many inputs
ran and whether it crashed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["sfu", "aioice"]):
    from aioice import stun
    from aioice.candidate import Candidate
    from aioice.ice import Connection

    from sfu.errors import ConfigError
    from sfu.service.config import config_from_dict
    from sfu.service.jsontext import parse_json
    from sfu.transport import packets as P
    from sfu.transport.aiortc_glue import FastStunProtocol
    from sfu.transport.transportcc import ReceiveHistory, SendHistory

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(tempfile.gettempdir()) / "sfu-fuzz-crashes"  # crash-* inputs, to replay


def rtp(data: bytes) -> None:
    try:
        packet = P.parse_rtp(data)
    except ValueError:
        return
    assert P.parse_header(data)[4] == packet.payload_offset
    for value in packet.ext.values():
        P.ext_element(1, value)  # what the forwarder does with an audio level: must fit
    P.vp8_frame_info(data, packet.payload_offset)
    try:
        P.unwrap_rtx(packet, 96, 1)
    except ValueError:
        pass


def rtcp(data: bytes) -> None:
    try:
        messages = P.parse_rtcp(data)
    except ValueError:
        return
    sent, received = SendHistory(), ReceiveHistory(1)
    for i in range(100):
        sent.record(1200, i / 100)
    for message in messages:
        if isinstance(message, P.TransportFeedback):
            for seq, _, _, _ in sent.match(message):
                received.add(seq & 0xFFFF, seq / 100)
            received.feedback(1)
        elif isinstance(message, P.SenderReport):
            P.build_sr(message)
        elif isinstance(message, P.ReceiverReport):
            P.build_rr(message)


def stun_path() -> Callable[[bytes], None]:
    """What a media port's protocol does with a datagram before ICE has selected a pair (STUN,
    first byte 0-3, goes to aioice; the rest to the DTLS hook's demultiplexing)."""
    connection = Connection(ice_controlling=False)
    connection.remote_username, connection.remote_password = "remote", "remote-password"
    protocol = FastStunProtocol(connection)
    protocol.connection_made(_Quiet())  # type: ignore[arg-type]
    protocol.local_candidate = Candidate(foundation="1", component=1, transport="udp",
                                         priority=1, host="127.0.0.1", port=9, type="host")
    connection._protocols.append(protocol)

    def one(data: bytes) -> None:
        protocol.datagram_received(data, ("127.0.0.1", 5000))
        while not connection._queue.empty():  # what aiortc's DTLS reader would take
            connection._queue.get_nowait()

    return one


class _Quiet:
    """A UDP transport that sends nowhere (aioice answers STUN requests through it)."""

    def sendto(self, data: bytes, addr: object = None) -> None:
        return None

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def json_text(data: bytes) -> None:
    try:
        parse_json(data.decode("utf-8"))
    except ValueError:
        pass


def config(data: bytes) -> None:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return  # load_config turns both into ConfigError
    try:
        config_from_dict(raw, {"SFU_AUTH_SECRET": "atheris-secret-0123456789abcdef-0123456789"})
    except ConfigError:
        pass


def receive() -> Callable[[bytes], None]:
    """A real endpoint (tests/fuzz/rtp_targets.py): the first byte picks RTP or RTCP and how far
    its clock moves on; the RTCP timer's compound is built after each datagram."""
    from tests.fuzz.rtp_targets import publishing_endpoint

    endpoint, _, _ = publishing_endpoint()
    clock = [1.0]

    def one(data: bytes) -> None:
        if not data:
            return
        clock[0] += (data[0] & 0x3F) * 0.05 if data[0] & 0x40 else data[0] * 600.0
        if data[0] & 0x80:
            endpoint._on_rtcp(data[1:], clock[0])
        else:
            endpoint._on_rtp(data[1:], clock[0])
        endpoint.rtcp_compound(clock[0])
        endpoint.send_transport_feedback()

    return one


def seeds() -> dict[str, list[bytes]]:
    ext = P.ext_block(P.ext_element(1, b"0") + P.ext_element(2, b"\x85") + P.ext_element(3, b"abc")
                      + P.ext_element(5, b"\x00\x07"))
    rtp_seeds = [P.build_rtp(0, True, 96, 7, 9000, 0x71DE0, ext, b"\x90\x80\x81\x23\x10\x00vp8"),
                 P.build_rtp(0x20, False, 111, 8, 960, 0xA0D10, ext, b"opus\x00\x00\x03")]
    block = P.ReportBlock(0x71DE0, 3, 1, 70000, 40, 0xABCD, 100)
    rtcp_seeds = [
        P.build_sr(P.SenderReport(0x71DE0, P.ntp_time(1.7e9), 9000, 10, 2000, [block]))
        + P.build_sdes_cname(1, "x"),
        P.build_rr(P.ReceiverReport(2, [block])) + P.build_remb(3, 750_000, [0x71DE0]),
        P.build_nack(3, 0x500, [10, 11, 26]) + P.build_pli(3, 0x501),
        P.build_transport_feedback(P.TransportFeedback(1, 2, 65530, 5, 0, [4, None, 300, -7])),
    ]
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = "a:b"
    request.add_message_integrity(b"key")
    request.add_fingerprint()
    return {
        "rtp": rtp_seeds, "rtcp": rtcp_seeds, "stun": [bytes(request)],
        "receive": [b"\x41" + p for p in rtp_seeds] + [b"\xc1" + p for p in rtcp_seeds],
        "json": [b'{"type": "join", "target": {"room": "team"}}', b"[1, 2.5e3, null, \"\\u00e9\"]"],
        "config": [(ROOT / "config" / "sfu.example.toml").read_bytes()],
    }


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "rtp": lambda: rtp, "rtcp": lambda: rtcp, "receive": receive, "stun": stun_path,
    "json": lambda: json_text, "config": lambda: config,
}


def fuzz_one(name: str, libfuzzer_args: list[str]) -> None:
    """Run one target in this process (libFuzzer exits it when done)."""

    async def main() -> None:  # an event loop for the endpoint's timers, which never fire here
        target = TARGETS[name]()
        atheris.Setup([sys.argv[0], *libfuzzer_args], target)
        atheris.Fuzz()

    asyncio.run(main())


def run_all(names: list[str], seconds: int) -> int:
    failed = []
    ARTIFACTS.mkdir(exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as corpus:
            for i, seed in enumerate(seeds()[name]):
                (Path(corpus) / f"seed-{i}").write_bytes(seed)
            proc = subprocess.run(
                [sys.executable, "-m", "tests.fuzz.atheris_run", "--one", name,
                 f"-max_total_time={seconds}", "-rss_limit_mb=2048", "-max_len=4096",
                 f"-artifact_prefix={ARTIFACTS}/{name}-", corpus],
                capture_output=True, text=True, cwd=ROOT)
        done = re.findall(r"Done (\d+) runs in (\d+) second", proc.stderr)
        runs = done[-1][0] if done else "?"
        status = "ok" if proc.returncode == 0 else f"CRASH (exit {proc.returncode})"
        print(f"atheris {name:8s} {runs:>9s} inputs in {seconds} s: {status}", flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-6000:], file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--one"]:
        fuzz_one(args[1], args[2:])
        return 0
    if args and args[0] in TARGETS and len(args) > 1 and not args[1].startswith("-"):
        fuzz_one(args[0], args[1:])  # replay crash files
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    ns = parser.parse_args(args)
    return run_all(ns.targets or list(TARGETS), ns.seconds)


if __name__ == "__main__":
    sys.exit(main())
