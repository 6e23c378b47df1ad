"""The reference web client's pages and assets (plain HTML, JS, CSS from ``sfu/web/``).

Routes: ``/c/{clinic}`` (patient entry), ``/c/{clinic}/dashboard`` (staff),
``/c/{clinic}/rooms/{room}`` (meeting room) and ``/static/{asset}``. The pages read the clinic and
room from their own address and the token from the URL fragment, so the HTML is static. Every
response here carries a Content-Security-Policy that allows only this origin: no inline script or
style, nothing from elsewhere.

Framing: only this origin and the portal origins of ``[server] embed_origins`` may show the pages
in a frame (``frame-ancestors``, which browsers check against every ancestor, so a listed portal
framed by another site is refused too). No X-Frame-Options: it cannot name an origin, and a
browser ignores it when ``frame-ancestors`` is there. Camera and microphone in a portal's iframe
need the iframe's ``allow="camera; microphone"``; our ``Permissions-Policy`` allows them to our
own origin (``self``), which is what the framed page is, so it does not list the portals (that list
would be for frames inside our pages, and there are none).

In a cluster a ``join`` may be redirected to another node's WebSocket (another port or host):
``connect_origins()`` names the http(s) origins of the cluster's nodes, read for every response
(nodes come and go), and ``connect-src`` allows each as ws(s)://host[:port]. A string that is not
a plain origin is left out (and logged once), so nothing from there can add CSP syntax.

Files are read once at setup and served from memory; only flat file names with a known extension
are served, so there is no path to traverse.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)

ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

PAGES = {"patient": "patient.html", "dashboard": "dashboard.html", "room": "room.html"}

CSP_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)

# Hosts where browsers treat plain http as a secure context (camera and microphone work there).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
# An origin as a browser serializes it, in what a CSP host-source can say: a lower-case DNS name
# or IPv4 address, an optional port; nothing that could end or extend a header.
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_ORIGIN = re.compile(rf"https?://{_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?")
_EXPECTED = ("expected an origin, scheme://host[:port] in lower case, "
             "e.g. 'https://portal.clinic.example'")


def embed_origin_problem(origin: str) -> str | None:
    """Why ``origin`` cannot be listed in ``server.embed_origins``; None when it can."""
    if "*" in origin:
        return ("no wildcards: list each portal origin "
                "(a wildcard would let any of its hosts frame the call)")
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return _EXPECTED
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return _EXPECTED
    if parts.path or parts.query or parts.fragment or origin.endswith(("?", "#")):
        return f"an origin has no path, query or fragment: {parts.scheme}://{parts.netloc}"
    if parts.netloc.startswith("["):
        return "an IPv6 address cannot be named in a Content-Security-Policy: use a host name"
    if not _ORIGIN.fullmatch(origin) or port == 0:
        return _EXPECTED
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return ("https required (browsers give camera and microphone only to secure pages; "
                "plain http only for localhost and 127.0.0.1)")
    return None


def websocket_source(origin: str) -> str | None:
    """ws(s)://host[:port] for a node's http(s) origin (case and a trailing slash forgiven);
    None when ``origin`` is not a plain origin a CSP can name (a path, a wildcard, user info,
    an IPv6 address, a bad port, anything that is not a host name or IPv4 address)."""
    if not isinstance(origin, str):
        return None
    candidate = origin.strip().lower()
    if candidate.endswith("/"):
        candidate = candidate[:-1]
    if not _ORIGIN.fullmatch(candidate):
        return None
    scheme, rest = candidate.split("://", 1)
    port = rest.rpartition(":")[2] if ":" in rest else None
    if port is not None and not 0 < int(port) <= 65535:
        return None
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}"


def connect_sources(origins: Iterable[str]) -> list[str]:
    """The ``connect-src`` sources besides ``'self'`` for the cluster nodes' ``origins``: each
    usable one as ws(s)://host[:port], once, in order; the rest are left out."""
    sources: list[str] = []
    for origin in origins:
        source = websocket_source(origin)
        if source is not None and source not in sources:
            sources.append(source)
    return sources


def security_headers(embed_origins: Sequence[str] = (),
                     connect: Sequence[str] = ()) -> dict[str, str]:
    """The headers of every page and asset; ``embed_origins`` may frame the pages besides us;
    ``connect``: WebSocket sources (from ``connect_sources``) the pages may open besides us."""
    frame_ancestors = " ".join(["'self'", *embed_origins])
    connect_src = " ".join(["'self'", *connect])
    return {
        "Content-Security-Policy": "; ".join([*CSP_DIRECTIVES, f"connect-src {connect_src}",
                                              f"frame-ancestors {frame_ancestors}"]),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_web_path(path: str) -> bool:
    return path.startswith("/c/") or path.startswith("/static/")


def _page_handler(body: bytes) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    return handler


def _load_assets(web_dir: Path) -> dict[str, tuple[bytes, str, str]]:
    assets: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(web_dir.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file() or not re.fullmatch(r"[a-z0-9_-]+\.[a-z]+", path.name):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        assets[path.name] = (body, content_type, etag)
    return assets


def setup_web_routes(app: web.Application, web_dir: Path,
                     embed_origins: Sequence[str] = (),
                     connect_origins: Callable[[], Iterable[str]] = lambda: []) -> None:
    """Serve the reference web client from ``web_dir`` on ``app``; pages may be framed by
    ``embed_origins`` (checked by ``embed_origin_problem``) besides this origin, and may open
    WebSockets to the http(s) origins ``connect_origins()`` returns (the cluster's nodes, read
    for every response) besides this origin."""
    for origin in embed_origins:  # the config loader refuses these already, with the reason
        problem = embed_origin_problem(origin)
        if problem:
            raise ValueError(f"not an embedding origin: {origin!r}: {problem}")
    embed = tuple(embed_origins)
    cached: dict[tuple[str, ...], dict[str, str]] = {}  # the last list of origins -> headers
    refused: set[str] = set()  # bad origins already logged

    def headers_now() -> dict[str, str]:
        origins = tuple(connect_origins())
        headers = cached.get(origins)
        if headers is None:
            sources = connect_sources(origins)
            for origin in origins:
                if websocket_source(origin) is None and origin not in refused and len(refused) < 64:
                    refused.add(origin)
                    log.warning("not a node origin, left out of connect-src: %r", origin)
            headers = security_headers(embed, sources)
            cached.clear()
            cached[origins] = headers
        return headers

    for filename in PAGES.values():
        if not (web_dir / filename).is_file():
            raise FileNotFoundError(f"web client page missing: {web_dir / filename}")
    pages = {kind: (web_dir / filename).read_bytes() for kind, filename in PAGES.items()}
    assets = _load_assets(web_dir)

    async def static(request: web.Request) -> web.Response:
        entry = assets.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound()
        body, content_type, etag = entry
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": content_type})

    app.router.add_get(f"/c/{{clinic:{ID}}}", _page_handler(pages["patient"]))
    app.router.add_get(f"/c/{{clinic:{ID}}}/dashboard", _page_handler(pages["dashboard"]))
    app.router.add_get(f"/c/{{clinic:{ID}}}/rooms/{{room:{ID}}}", _page_handler(pages["room"]))
    app.router.add_get("/static/{name}", static)

    async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        if _is_web_path(request.path):
            for name, value in headers_now().items():
                response.headers.setdefault(name, value)

    app.on_response_prepare.append(add_security_headers)
