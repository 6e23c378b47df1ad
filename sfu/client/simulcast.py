"""Answering the server's simulcast offer as Chromium does (docs/API.md, issue 12). Pure text.

The server's offer asks for simulcast on the publisher's video m-line (mid "1"):

    a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
    a=rid:q recv
    a=rid:h recv
    a=rid:f recv
    a=simulcast:recv q;h;f

aiortc neither parses these lines nor writes their answer (its session description drops what
it does not know when it serializes), so the client rewrites the text of its final answer: the
rid extensions, ``a=rid:<rid> send`` per layer and ``a=simulcast:send <rids>``, and no ``a=ssrc``
lines on that m-line (each layer has an SSRC of its own, named by the rid in its packets).
"""

from __future__ import annotations

from dataclasses import dataclass

URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


@dataclass(frozen=True)
class SimulcastOffer:
    """What an offer asks of the first video m-line: its mid, the rids it receives (lowest
    first, in the ``a=simulcast:recv`` order) and the ids of the rid extensions."""

    mid: str
    rids: tuple[str, ...]
    rid_ext: int | None
    repaired_rid_ext: int | None


def _sections(sdp: str) -> list[list[str]]:
    """The session part, then each media section, as lists of lines."""
    out: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


def _simulcast_rids(value: str) -> list[str]:
    """The rids of one direction of ``a=simulcast`` (``q;h,x;~f``): the first alternative of each
    stream, without the paused marker."""
    rids = []
    for stream in value.split(";"):
        first = stream.split(",")[0].strip().lstrip("~")
        if first:
            rids.append(first)
    return rids


def simulcast_offer(sdp: str) -> SimulcastOffer | None:
    """The simulcast the offer's first video m-line asks to receive, or None."""
    video = next((s for s in _sections(sdp)[1:] if s and s[0].startswith("m=video")), None)
    if video is None:
        return None
    mid = ""
    recv: list[str] = []
    rid_lines: set[str] = set()
    exts: dict[str, int] = {}
    for line in video:
        if line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=simulcast:"):
            words = line[12:].split()
            for direction, value in zip(words[::2], words[1::2], strict=False):
                if direction == "recv":
                    recv = _simulcast_rids(value)
        elif line.startswith("a=rid:"):
            words = line[6:].split()
            if len(words) >= 2 and words[1] == "recv":
                rid_lines.add(words[0])
        elif line.startswith("a=extmap:"):
            words = line[9:].split()
            if len(words) >= 2 and words[1] in (URI_RID, URI_REPAIRED_RID):
                try:
                    exts[words[1]] = int(words[0].split("/")[0])
                except ValueError:
                    continue
    rids = tuple(r for r in recv if r in rid_lines)
    if not rids:
        return None
    return SimulcastOffer(mid, rids, exts.get(URI_RID), exts.get(URI_REPAIRED_RID))


def answer_simulcast(answer: str, offer: SimulcastOffer, rids: tuple[str, ...]) -> str:
    """``answer`` with its m-line of ``offer.mid`` sending ``rids`` (some of the offer's, lowest
    first) as simulcast: the offer's rid extensions, ``a=rid:<rid> send`` lines and
    ``a=simulcast:send``, and its ``a=ssrc`` / ``a=ssrc-group`` lines removed."""
    eol = "\r\n" if "\r\n" in answer else "\n"
    sections = _sections(answer)
    for section in sections[1:]:
        if f"a=mid:{offer.mid}" not in section or not section[0].startswith("m=video"):
            continue
        trailing = []
        while section and section[-1] == "":
            trailing.append(section.pop())
        kept = [line for line in section if not line.startswith(
            ("a=ssrc:", "a=ssrc-group:", "a=rid:", "a=simulcast:"))]
        extra = []
        for uri, ext_id in ((URI_RID, offer.rid_ext), (URI_REPAIRED_RID, offer.repaired_rid_ext)):
            if ext_id is not None and not any(line.startswith("a=extmap:") and uri in line
                                              for line in kept):
                extra.append(f"a=extmap:{ext_id} {uri}")
        extra += [f"a=rid:{rid} send" for rid in rids]
        extra.append(f"a=simulcast:send {';'.join(rids)}")
        section[:] = kept + extra + trailing
    return eol.join(line for section in sections for line in section)
