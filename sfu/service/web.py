"""The reference web client's pages and assets (plain HTML, JS, CSS from ``sfu/web/``).

Routes: ``/c/{clinic}`` (patient entry), ``/c/{clinic}/dashboard`` (staff),
``/c/{clinic}/rooms/{room}`` (meeting room) and ``/static/{asset}``. The pages read the clinic and
room from their own address and the token from the URL fragment, so the HTML is static. Every
response here carries a Content-Security-Policy that allows only this origin: no inline script or
style, nothing from elsewhere.

Files are read once at setup and served from memory; only flat file names with a known extension
are served, so there is no path to traverse.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

PAGES = {"patient": "patient.html", "dashboard": "dashboard.html", "room": "room.html"}

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'self'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_web_path(path: str) -> bool:
    return path.startswith("/c/") or path.startswith("/static/")


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if _is_web_path(request.path):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


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


def setup_web_routes(app: web.Application, web_dir: Path) -> None:
    """Serve the reference web client from ``web_dir`` on ``app``."""
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
    app.on_response_prepare.append(_add_security_headers)
