"""The Python client follows ``redirect`` (a cluster node that does not host the call): a new
socket to the hosting node, the same token and ``join``, at most three hops; and a rejoin goes
back to the node it first used, which redirects again.

The redirecting node is ``RedirectStub`` (a real aiohttp server on loopback); the hosting node
is a real ``Server``, with another client already in the call and media checked both ways.
"""

from __future__ import annotations

import pytest

from sfu.client.client import MAX_REDIRECTS, Client, ClientError
from tests.conftest import make_config, running_server
from tests.integration.helpers import close_all, receives_everyone, wait_for
from tests.integration.redirect_stub import RedirectStub, ws_url


async def test_a_join_redirected_to_the_hosting_node_gets_media_and_rejoins_through_the_first_node(
        server, token, clip):
    async with RedirectStub(lambda n: ws_url(server.url)) as stub:
        here = Client(server.url, token(sub="dr-here"), clip=clip)
        moved = Client(stub.url, token(sub="dr-moved"), clip=clip)
        try:
            await here.join({"room": "team"})
            joined = await moved.join({"room": "team"})
            assert [p["id"] for p in joined["participants"]] == [here.participant]
            assert (moved.url, moved.node_url, moved.redirects) == (stub.url, server.url, 1)
            assert [(j.token, j.target) for j in stub.joins] == [
                (moved.token, {"room": "team"})]
            # the redirect is not a failure: nothing but the redirect came from the first node
            assert [m["type"] for m in moved.messages[:2]] == ["authenticated", "redirect"]
            assert moved.error is None
            await wait_for(receives_everyone([here, moved]), timeout=15)

            # the connection drops: the client goes back to the node it first used
            first = moved.participant
            await moved.rejoin()
            assert len(stub.joins) == 2 and moved.node_url == server.url
            assert moved.participant != first
            await here.wait_message(lambda m: m["type"] == "participant_left"
                                    and m["participant"]["id"] == first)
            await wait_for(receives_everyone([here, moved]), timeout=15)
            call = next(iter(server.calls.by_key.values()))
            assert sorted(call.participants) == sorted([here.participant, moved.participant])
        finally:
            await close_all([here, moved])


async def test_three_redirects_are_followed_and_a_fourth_is_an_error(server, token, clip):
    async with RedirectStub(lambda n: ws_url(stub.url) if n < 3 else ws_url(server.url)) as stub:
        client = Client(stub.url, token(sub="dr-far"), clip=clip, publish_video=False)
        try:
            await client.join({"room": "team"})
            assert client.redirects == MAX_REDIRECTS == 3 and client.node_url == server.url
            assert stub.sockets == 3 and len(stub.joins) == 3
        finally:
            await client.leave()

    async with RedirectStub(lambda n: ws_url(loop.url)) as loop:
        client = Client(loop.url, token(sub="dr-loop"), clip=clip)
        try:
            with pytest.raises(ClientError) as refused:
                await client.join({"room": "team"})
            assert refused.value.code == "too_many_redirects"
            # the first socket and three more: the fourth redirect is not followed
            assert loop.sockets == 4 and len(loop.joins) == 4
            assert client.signaling_lost
        finally:
            await client.close()
    await wait_for(lambda: not server.calls.by_key)


async def test_a_redirect_keeps_the_token_in_the_url_for_a_client_that_puts_it_there(token, clip):
    async with running_server(make_config(auth={"url_token": True})) as srv, \
            RedirectStub(lambda n: ws_url(srv.url)) as stub:
        client = Client(stub.url, token(sub="dr-url"), clip=clip, url_token=True,
                        publish_video=False)
        try:
            await client.join({"room": "team"})
            assert stub.joins[0].token == client.token and client.node_url == srv.url
            assert not any(m["type"] == "authenticated" for m in client.messages)
        finally:
            await client.leave()


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/v1/ws", "ws:///v1/ws", "ws://u:p@h/v1/ws", 7])
async def test_a_redirect_to_something_else_than_a_websocket_url_is_an_error(token, clip, url):
    async with RedirectStub(lambda n: url) as stub:  # type: ignore[arg-type,return-value]
        client = Client(stub.url, token(), clip=clip)
        try:
            with pytest.raises(ClientError) as refused:
                await client.join({"room": "team"})
            assert refused.value.code == "bad_redirect"
            assert stub.sockets == 1
        finally:
            await client.close()
