"""The ``[cluster]`` section: absent, the server is one process without Redis."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterSettings:
    # redis://[:password@]host:port/db (rediss:// for TLS); every node of one service uses the same
    redis_url: str
    # this node's name, unique in the cluster; "" -> "<hostname>-<port>"
    node_id: str = ""
    # how clients reach this node's HTTP and WebSocket (redirects and relayed requests go there);
    # "" -> http://<server.host>:<server.port>
    advertise_url: str = ""
    # seconds between load reports; a node silent for 3 heartbeats is lost and its calls with it
    heartbeat: float = 1.0
    # a port this node also listens on with SO_REUSEPORT, shared with the other nodes of this host
    # (``sfu serve --workers N``: the kernel spreads connections; any node answers); 0: none
    shared_port: int = 0
    # Redis keys start with this, so several services (or test runs) can share one Redis
    key_prefix: str = "sfu"

    @property
    def ttl(self) -> float:
        """How long a node's load report lives: a node silent this long is lost."""
        return 3 * self.heartbeat
