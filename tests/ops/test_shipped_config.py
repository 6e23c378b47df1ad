"""What ships in config/ and docs/ matches the code: example config, dashboard, systemd unit."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import typing
from pathlib import Path

import pytest

from sfu.cli import main
from sfu.service.config import Config, load_config
from sfu.service.server import Server

from ..conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "sfu.example.toml"
REAL_SECRET = "an-operators-real-secret-0123456789abcdef"
REAL_TURN_SECRET = "the-turn-servers-static-auth-secret-0123456789"
ENV = {"SFU_AUTH_SECRET": REAL_SECRET, "SFU_TURN_SECRET": REAL_TURN_SECRET}


def exported_metric_names() -> set[str]:
    """Every sample name /metrics can carry, from the # TYPE lines of a fresh server."""
    text = Server(make_config()).metrics.render().decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "counter":
                names.update({name + "_total", name + "_created"})
            if kind == "histogram":
                names.update({name + s for s in ("_bucket", "_sum", "_count", "_created")})
    return names


def test_the_example_config_passes_check_config(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # with real secrets in the environment, as the example says to keep them (its own
    # placeholders are refused: tests/test_config.py)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "warning" not in capsys.readouterr().err  # the example hands out no shared password
    assert load_config(EXAMPLE, environ=ENV).webhooks.queue_size == 1000


def test_the_example_config_documents_every_key() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    missing: list[str] = []

    def walk(cls: typing.Any, table: dict[str, typing.Any], where: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            optional = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
            if f.name not in table and optional and f.default is None:
                # an optional section (``[cluster]``) is shown commented out, every key with it
                text = EXAMPLE.read_text()
                if f"# [{f.name}]" not in text:
                    missing.append(where + f.name)
                missing.extend(f"{where}{f.name}.{k.name}" for k in dataclasses.fields(optional[0])
                               if not re.search(rf"^# {k.name} = ", text, re.M))
                continue
            if f.name not in table:
                missing.append(where + f.name)
                continue
            value = table[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, value, f"{where}{f.name}.")
            elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                if not value:
                    missing.append(where + f.name)
                for item in value[:1]:
                    walk(typing.get_args(tp)[0], item, f"{where}{f.name}[].")

    walk(Config, raw, "")
    assert missing == []


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b((?:sfu|process)_[a-z_]+)\b", e)}
    assert used, "no queries"
    assert used - exported_metric_names() == set()
    core = {"sfu_participants", "sfu_waiting_patients", "sfu_rtp_packets_forwarded_total",
            "sfu_joins_total", "sfu_event_loop_lag_seconds_bucket"}
    assert core <= used


def test_the_operations_doc_lists_only_exported_metrics() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    listed = set(re.findall(r"`((?:sfu|process)_[a-z_]+)", doc))
    assert "sfu_participants" in listed
    assert listed - exported_metric_names() == set()


def test_the_systemd_unit_stops_after_the_drain_timeout() -> None:
    unit = (ROOT / "config" / "sfu.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["KillSignal"] == "SIGTERM"
    assert "SFU_AUTH_SECRET" in unit and settings["EnvironmentFile"].startswith("/")
    drain = load_config(EXAMPLE, environ=ENV).server.drain_timeout
    assert float(settings["TimeoutStopSec"]) > drain


def test_the_cluster_template_unit_names_the_node_after_its_instance_and_outlasts_a_drain() -> None:
    unit = (ROOT / "config" / "sfu@.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["KillSignal"] == "SIGTERM" and settings["Restart"] == "on-failure"
    assert "--node-id %i" in settings["ExecStart"] and "SFU_AUTH_SECRET" in unit
    assert "/etc/sfu/sfu.env" in re.findall(r"^EnvironmentFile=(.*)$", unit, re.M)
    drain = load_config(EXAMPLE, environ=ENV).server.drain_timeout
    assert float(settings["TimeoutStopSec"]) > 2 * drain  # drain, then close, each up to drain
