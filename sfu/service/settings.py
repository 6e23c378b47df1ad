"""The configuration sections the edge reads: ``[server]``, ``[metrics]``, ``[webhooks]``,
``[logging]``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # base URL used in invite links; default http://host:port
    max_message_bytes: int = 65536
    drain_timeout: float = 10.0
    # an idle HTTP keep-alive connection is closed after this long (aiohttp's default is an
    # hour: a stranger's idle connections would hold file descriptors that long)
    keepalive_timeout: float = 15.0
    # Origins (scheme://host[:port]) whose pages may show the web client's pages in an iframe,
    # besides this server's own: the CSP's frame-ancestors (sfu/service/web.py)
    embed_origins: list[str] = field(default_factory=list)
    # reverse proxies (addresses or CIDR networks) whose forwarding header gives the client's
    # address for the per-address budgets; empty: the TCP peer is the client, headers ignored
    trusted_proxies: list[str] = field(default_factory=list)
    forwarded_header: str = "X-Forwarded-For"  # or "Forwarded" (RFC 7239)


@dataclass(frozen=True)
class MetricsSettings:
    port: int = 0  # 0: /metrics on the main port
    # On the main port /metrics answers only loopback clients that came without a proxy's
    # forwarding headers, or a request with ``Authorization: Bearer <token>``; ``public`` opens it
    # to everyone. (The separate ``port`` listener is the operator's to firewall.)
    token: str = ""
    public: bool = False


@dataclass(frozen=True)
class WebhooksSettings:
    urls: list[str] = field(default_factory=list)
    secret: str = ""
    timeout: float = 5.0
    max_attempts: int = 5
    queue_size: int = 1000


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"  # "text" or "json"
