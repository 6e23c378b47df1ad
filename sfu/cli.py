"""``sfu serve | token | check-config`` (API.md "Running")."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sfu.auth import ROLES, mint_token
from sfu.cluster.settings import ClusterSettings
from sfu.cluster.workers import WorkersPlan, follow_supervisor, supervise
from sfu.errors import ConfigError, UnsafeSecretFile
from sfu.service.config import (
    Config,
    cluster_problems,
    config_warnings,
    default_config,
    load_config,
)
from sfu.transport.settings import parse_port_range


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Context passed as ``extra={"clinic": ..., "participant": ...}``
    (opaque ids: clinic, space, room, participant, role, reason, ...) becomes top-level fields;
    name-like keys are dropped so that no display name reaches the logs."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in self._STANDARD or key in entry or key.startswith("_") \
                    or key.lower().endswith("name"):
                continue
            entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.logging.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.logging.level.upper())
    # aiortc/aioice log per packet at DEBUG and chatter at INFO: keep them quiet unless asked.
    for name in ("aiortc", "aioice", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def default_secret_file() -> Path:
    """Where ``sfu serve`` on the embedded default keeps this run's random secret (mode 0600), so
    that ``sfu token --secret-from-config`` in another terminal can sign with it."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(tempfile.gettempdir(), f"sfu-{os.getuid()}")
    return Path(base) / "sfu-default-secret"


def _check_private(path: Path, *, directory: bool) -> None:
    """``path`` (not followed if a symlink) is ours and nobody else may change it (a directory:
    not group- or world-writable) or read it (a file: no group or other bits at all)."""
    st = os.lstat(path)
    kind = "directory" if directory else "file"
    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        raise UnsafeSecretFile(f"{path} is not a {kind} (a symbolic link or something else)")
    if st.st_uid != os.getuid():
        raise UnsafeSecretFile(f"{path} belongs to user id {st.st_uid}, not to us ({os.getuid()})")
    mode = stat.S_IMODE(st.st_mode)
    if mode & (0o022 if directory else 0o077):
        need = "not writable by group or others (chmod 700)" if directory else "mode 600"
        raise UnsafeSecretFile(f"{path} has mode {mode:o}: it must be {need}")


def save_default_secret(secret: str) -> None:
    """Keep the embedded default's secret in ``default_secret_file()`` for ``sfu token``: its
    directory is created with mode 0700, or an existing one must be ours and not writable by
    others (else ``UnsafeSecretFile``: anyone who can replace the file can read the secret, or
    make us write it where they can); the file is written 0600, never through a symlink."""
    path = default_secret_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path.parent, directory=True)
    if path.exists() or path.is_symlink():
        _check_private(path, directory=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(secret)


def read_default_secret() -> str | None:
    """The secret a running ``sfu serve`` on the embedded default saved, None when there is none
    (``UnsafeSecretFile`` when the file or its directory is not private to us)."""
    path = default_secret_file()
    if not path.is_file():
        return None
    _check_private(path.parent, directory=True)
    _check_private(path, directory=False)
    return path.read_text().strip()


def _load(path: str | None) -> tuple[Config, bool]:
    if path is None:
        cfg = default_config()
        secret = os.environ.get("SFU_AUTH_SECRET")
        if secret:
            cfg = replace(cfg, auth=replace(cfg.auth, secret=secret))
            return cfg, False
        return cfg, True
    return load_config(path), False


def _save_secret(secret: str) -> bool:
    """Keep the embedded default's secret for ``sfu token``; False: refuse to start."""
    try:
        save_default_secret(secret)
    except UnsafeSecretFile as exc:
        print(f"sfu: refusing to start: the secret file for 'sfu token' is not private: {exc}",
              file=sys.stderr)
        return False
    except OSError as exc:
        print(f"sfu: could not save the secret for 'sfu token' ({exc})", file=sys.stderr)
    return True


def _print_secret(secret: str) -> None:
    print(f"sfu: embedded default config; API secret for this run: {secret}", flush=True)
    print("sfu: mint a token: sfu token --secret-from-config --role staff --clinic demo "
          "--sub dr-lee --name 'Dr Lee'", flush=True)


def with_serve_flags(config: Config, args: argparse.Namespace) -> Config:
    """Apply ``serve``'s per-worker flags (``--workers`` passes them to each worker; usable by
    hand): ``--node-id``, ``--redis-url``, ``--advertise-url``, ``--shared-port`` create or change
    ``[cluster]`` (creating it needs a Redis URL); ``--udp-ports`` and ``--metrics-port`` replace
    ``media.udp_ports`` and ``metrics.port``. ConfigError lists what is wrong."""
    problems: list[str] = []
    changes: dict[str, Any] = {
        name: value for name, value in (
            ("redis_url", args.redis_url), ("node_id", args.node_id),
            ("advertise_url", args.advertise_url), ("shared_port", args.shared_port))
        if value is not None
    }
    if changes:
        if config.cluster is None and args.redis_url is None:
            problems.append("--node-id, --advertise-url and --shared-port change the config's "
                            "[cluster] section: it has none (add one, or pass --redis-url)")
        else:
            cluster = (replace(config.cluster, **changes) if config.cluster is not None
                       else ClusterSettings(**changes))
            problems += cluster_problems(cluster)
            config = replace(config, cluster=cluster)
    if args.udp_ports is not None:
        try:
            parse_port_range(args.udp_ports)
        except ValueError:
            problems.append(f"--udp-ports: a range like 40000-40999, got {args.udp_ports!r}")
        config = replace(config, media=replace(config.media, udp_ports=args.udp_ports))
    if args.metrics_port is not None:
        if not 0 <= args.metrics_port <= 65535:
            problems.append(f"--metrics-port: must be 0-65535, got {args.metrics_port}")
        config = replace(config, metrics=replace(config.metrics, port=args.metrics_port))
    if problems:
        raise ConfigError(problems)
    return config


def _serve_workers(config: Config, args: argparse.Namespace, show_secret: bool) -> int:
    """``sfu serve --workers N``: the supervisor (sfu/cluster/workers.py) runs no server itself."""
    if args.shared_port is not None:
        print("sfu: --shared-port is set for each worker by --workers (the public port is "
              "--port or server.port)", file=sys.stderr)
        return 1
    cluster = config.cluster
    try:
        udp_ports = parse_port_range(config.media.udp_ports)
    except ValueError:
        udp_ports = None  # the loader already refused it
    plan = WorkersPlan(
        count=args.workers, host=config.server.host if args.host is None else args.host,
        port=config.server.port if args.port is None else args.port, config_path=args.config,
        drain_timeout=config.server.drain_timeout,
        redis_url=cluster.redis_url if cluster else "", node_id=cluster.node_id if cluster else "",
        advertise_url=cluster.advertise_url if cluster else "", udp_ports=udp_ports,
        metrics_port=config.metrics.port, forward_redis_url=args.redis_url is not None)
    env = dict(os.environ)
    if show_secret:  # one random secret for every worker, as `sfu token` finds it
        if not _save_secret(config.auth.secret):
            return 1
        env["SFU_AUTH_SECRET"] = config.auth.secret
        _print_secret(config.auth.secret)
    code: int = asyncio.run(supervise(plan, env, lambda line: print(line, flush=True)))
    return code


async def _serve(config: Config, host: str | None, port: int | None, show_secret: bool) -> int:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    from sfu.service.server import Server

    if show_secret and not _save_secret(config.auth.secret):
        return 1
    server = Server(config)
    await server.start(host, port)
    log = logging.getLogger("sfu")
    bound = f"http://{host or config.server.host}:{server.port}"
    if show_secret:
        _print_secret(config.auth.secret)
    for warning in config_warnings(config):
        log.warning("config: %s", warning)
    log.info("listening on %s", bound)
    print(f"sfu: listening on {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining (timeout %.0fs)", config.server.drain_timeout)
    try:
        await asyncio.wait_for(server.drain(), timeout=config.server.drain_timeout)
    except TimeoutError:
        log.warning("drain timed out; closing anyway")
    await asyncio.wait_for(server.close(), timeout=max(1.0, config.server.drain_timeout))
    log.info("stopped")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config, show_secret = _load(args.config)
        config = with_serve_flags(config, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 1
    setup_logging(config)
    if args.workers is not None:
        return _serve_workers(config, args, show_secret)
    if not follow_supervisor():  # a worker whose supervisor is already gone
        return 1
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    code: int = runner(_serve(config, args.host, args.port, show_secret))
    return code


def cmd_token(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("SFU_AUTH_SECRET")
    audience = issuer = ""
    if args.config:  # the config's aud/iss (when set) go into the token, so the server takes it
        try:
            auth = load_config(args.config).auth
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"config error: {problem}", file=sys.stderr)
            return 1
        audience, issuer = auth.audience, auth.issuer
    if args.secret_from_config or not secret:
        if args.config:
            try:
                secret = load_config(args.config).auth.secret
            except ConfigError as exc:
                for problem in exc.problems:
                    print(f"config error: {problem}", file=sys.stderr)
                return 1
        elif not secret:
            try:
                secret = read_default_secret()  # a running `sfu serve` on defaults
            except UnsafeSecretFile as exc:
                print(f"sfu token: the saved secret is not private, not used: {exc}",
                      file=sys.stderr)
                return 1
        if not secret:
            print("sfu token: no secret: pass --config FILE, set SFU_AUTH_SECRET or --secret, "
                  "or start `sfu serve` on its embedded default first", file=sys.stderr)
            return 1
    assert secret is not None
    print(mint_token(secret, sub=args.sub, role=args.role, clinic=args.clinic, name=args.name or "",
                     space=args.space, room=args.room, ttl=args.ttl, audience=audience,
                     issuer=issuer))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 1
    for warning in config_warnings(config):  # valid, but unwise: said, not refused
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    print(f"{args.file}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfu", description="Telehealth SFU")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--config", help="TOML config file (default: embedded demo config)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, metavar="N",
                   help="run N worker processes on this box, each a node of one cluster, sharing "
                        "the public port through SO_REUSEPORT, with a private redis-server unless "
                        "[cluster] redis_url is set (docs/cluster.md)")
    # set per worker by --workers; usable by hand to run one node of a cluster
    p.add_argument("--node-id", help="[cluster] node_id (internal: set per worker by --workers)")
    p.add_argument("--redis-url", help="[cluster] redis_url; creates [cluster] when the config "
                                       "has none (internal: set per worker by --workers)")
    p.add_argument("--advertise-url",
                   help="[cluster] advertise_url (internal: set per worker by --workers)")
    p.add_argument("--shared-port", type=int,
                   help="[cluster] shared_port (internal: set per worker by --workers)")
    p.add_argument("--udp-ports", help="media.udp_ports (internal: set per worker by --workers)")
    p.add_argument("--metrics-port", type=int,
                   help="metrics.port (internal: set per worker by --workers)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("token", help="mint a token")
    p.add_argument("--secret", help="the API secret (or SFU_AUTH_SECRET)")
    p.add_argument("--secret-from-config", action="store_true",
                   help="read the secret from --config FILE (or SFU_AUTH_SECRET)")
    p.add_argument("--config", default=os.environ.get("SFU_CONFIG"))
    p.add_argument("--role", required=True, choices=sorted(ROLES))
    p.add_argument("--clinic", required=True)
    p.add_argument("--sub", required=True)
    p.add_argument("--name")
    p.add_argument("--space")
    p.add_argument("--room")
    p.add_argument("--ttl", type=int, default=3600)
    p.set_defaults(func=cmd_token)
    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
