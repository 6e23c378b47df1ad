"""The web client's routes: pages and assets served with a strict Content-Security-Policy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest


async def test_pages_are_served_with_a_strict_content_security_policy(server: Any) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/c/demo", "/c/demo/dashboard", "/c/demo/rooms/team"):
            async with http.get(server.url + path) as response:
                assert response.status == 200, path
                assert response.content_type == "text/html"
                assert response.headers["Cache-Control"] == "no-store"
                csp = response.headers["Content-Security-Policy"]
                assert "default-src 'self'" in csp and "script-src 'self'" in csp
                assert "unsafe" not in csp and "http" not in csp and "*" not in csp
                assert response.headers["Referrer-Policy"] == "no-referrer"
                body = await response.text()
                assert "<script>" not in body and "style=" not in body, "inline code breaks the CSP"


async def test_assets_are_served_with_their_types_and_nothing_else(server: Any) -> None:
    async with aiohttp.ClientSession() as http:
        for name, kind in (("call.js", "text/javascript"), ("style.css", "text/css")):
            async with http.get(f"{server.url}/static/{name}") as response:
                assert response.status == 200
                assert response.content_type == kind
                assert "Content-Security-Policy" in response.headers
                etag = response.headers["ETag"]
            async with http.get(f"{server.url}/static/{name}",
                                headers={"If-None-Match": etag}) as response:
                assert response.status == 304
        for path in ("/static/nothing.js", "/static/patient.html", "/static/%2e%2e%2fserver.py",
                     "/static/../web_routes.py", "/c/demo/rooms/no%20such/x", "/c/"):
            async with http.get(server.url + path) as response:
                assert response.status == 404, path


async def test_api_responses_do_not_get_the_page_headers(server: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/healthz") as response:
            assert "Content-Security-Policy" not in response.headers


async def test_only_this_origin_may_frame_the_pages_by_default(server: Any) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/c/demo", "/c/demo/dashboard", "/c/demo/rooms/team", "/static/call.js"):
            async with http.get(server.url + path) as response:
                csp = response.headers["Content-Security-Policy"]
                assert csp.endswith("; frame-ancestors 'self'"), csp
                assert "X-Frame-Options" not in response.headers
                policy = response.headers["Permissions-Policy"]
                assert "camera=(self)" in policy and "microphone=(self)" in policy, policy


async def test_listed_portal_origins_may_frame_the_pages_and_nothing_contradicts_it() -> None:
    from tests.conftest import make_config, running_server

    origins = ["https://portal.clinic.example", "https://portal.clinic.example:8443",
               "http://localhost:3000"]
    async with running_server(make_config(server={"embed_origins": origins})) as srv:
        async with aiohttp.ClientSession() as http:
            for path in ("/c/demo", "/c/demo/dashboard", "/c/demo/rooms/team"):
                async with http.get(srv.url + path) as response:
                    assert response.status == 200
                    directives = [d.strip() for d in
                                  response.headers["Content-Security-Policy"].split(";")]
                    assert [d for d in directives if d.startswith("frame-ancestors")] == [
                        "frame-ancestors 'self' https://portal.clinic.example "
                        "https://portal.clinic.example:8443 http://localhost:3000"]
                    assert "default-src 'self'" in directives and "script-src 'self'" in directives
                    # no older header that would forbid the frame; camera and microphone stay
                    # allowed to our own origin, which the framed page is
                    assert "X-Frame-Options" not in response.headers
                    policy = response.headers["Permissions-Policy"]
                    assert "camera=(self)" in policy and "microphone=(self)" in policy, policy
                    assert "Set-Cookie" not in response.headers


def test_a_server_built_without_the_loader_refuses_a_bad_origin_too() -> None:
    from sfu.service.server import Server
    from tests.conftest import make_config

    with pytest.raises(ValueError, match="not an embedding origin"):
        Server(make_config(server={"embed_origins": ["https://portal.example; script-src *"]}))


@pytest.mark.parametrize(("origin", "source"), [
    ("http://127.0.0.1:8091", "ws://127.0.0.1:8091"),
    ("https://node-2.clinic.example", "wss://node-2.clinic.example"),
    ("HTTPS://Node-2.Clinic.Example:8443/", "wss://node-2.clinic.example:8443"),
    ("http://10.0.0.7:8080", "ws://10.0.0.7:8080"),
    ("http://localhost", "ws://localhost"),
])
def test_a_node_origin_becomes_its_websocket_source(origin: str, source: str) -> None:
    from sfu.service.web import websocket_source

    assert websocket_source(origin) == source


@pytest.mark.parametrize("origin", [
    "", "*", "http://*", "https://*.clinic.example", "ws://127.0.0.1:8091", "127.0.0.1:8091",
    "http://127.0.0.1:8091/v1/ws", "http://127.0.0.1:8091?x", "http://127.0.0.1:8091#x",
    "http://user@127.0.0.1:8091", "http://[::1]:8091", "http://127.0.0.1:0",
    "http://127.0.0.1:99999", "http://127.0.0.1:8091; script-src *", "http://a b",
    "http://a\r\nSet-Cookie: x=1", "http://a,b", "http://a'", "javascript:alert(1)",
    "https://-bad-.example", "https://a..example",
])
def test_what_is_not_a_plain_origin_is_left_out(origin: str) -> None:
    from sfu.service.web import connect_sources, websocket_source

    assert websocket_source(origin) is None
    assert connect_sources([origin, "http://127.0.0.1:8091"]) == ["ws://127.0.0.1:8091"]


async def test_connect_src_follows_the_cluster_nodes_response_by_response() -> None:
    """``connect_origins`` is read for every response: a node that joins or leaves the cluster
    is in (or out of) the next page's policy; bad strings never reach the header."""
    from aiohttp import web

    from sfu.service.server import WEB_DIR
    from sfu.service.web import setup_web_routes

    nodes: list[str] = []
    app = web.Application()
    setup_web_routes(app, WEB_DIR, ["https://portal.clinic.example"],
                     connect_origins=lambda: nodes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def directives(path: str) -> list[str]:
        async with http.get(url + path) as response:
            assert response.status == 200
            return [d.strip() for d in response.headers["Content-Security-Policy"].split(";")]

    try:
        async with aiohttp.ClientSession() as http:
            assert "connect-src 'self'" in await directives("/c/demo/rooms/team")
            nodes[:] = ["http://127.0.0.1:8091", "https://node-2.clinic.example:8443",
                        "http://127.0.0.1:8091/", "http://evil; script-src *",
                        "http://a\r\nX-Injected: 1", "https://*.example"]
            for path in ("/c/demo/rooms/team", "/c/demo", "/static/call.js"):
                got = await directives(path)
                assert [d for d in got if d.startswith("connect-src")] == [
                    "connect-src 'self' ws://127.0.0.1:8091 wss://node-2.clinic.example:8443"]
                assert got[-1] == "frame-ancestors 'self' https://portal.clinic.example"
                assert "script-src 'self'" in got and len(got) == 11, got
            nodes[:] = ["http://127.0.0.1:8092"]
            got = await directives("/c/demo/dashboard")
            assert "connect-src 'self' ws://127.0.0.1:8092" in got
    finally:
        await runner.cleanup()
