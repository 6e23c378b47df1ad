from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from sfu.auth import Claims
from sfu.bandwidth import AdmissionSettings
from sfu.calls.call import Participant
from sfu.calls.manager import Calls, CallsSettings
from sfu.config import config_from_dict
from sfu.rooms import ClinicRegistry
from tests.calls.fakes import Endpoints, FakeClock, FakeEndpoint, RecordingClient, RecordingEvents

SECRET = "test-secret-0123456789abcdef-0123456789"


def make_registry(max_participants: int = 6) -> ClinicRegistry:
    config = config_from_dict({
        "auth": {"secret": SECRET},
        "limits": {"max_participants": max_participants},
        "clinics": [{"id": "c1", "name": "Clinic one", "rooms": [{"id": "team", "name": "Team"}]}],
    }, environ={})
    return ClinicRegistry(config)


def claims(role: str, sub: str, **kw: Any) -> Claims:
    return Claims(sub=sub, role=role, clinic="c1", name=kw.pop("name", sub.title()),
                  space=kw.pop("space", None), room=kw.pop("room", None),
                  exp=int(time.time()) + 3600)


@dataclass
class World:
    """A calls manager over fake endpoints, a fake clock and recording observers."""

    calls: Calls
    registry: ClinicRegistry
    endpoints: Endpoints
    events: RecordingEvents
    wall: FakeClock
    mono: FakeClock
    clients: dict[str, RecordingClient] = field(default_factory=dict)

    def join(self, role: str, sub: str, target: dict[str, str], **kw: Any) -> Participant:
        client = self.clients[sub] = RecordingClient()
        return self.calls.join(claims(role, sub, **kw), target, client)

    def endpoint(self, participant: Participant) -> FakeEndpoint:
        return self.endpoints.made[participant.id]

    def enter(self, name: str = "Pat") -> str:
        space = self.registry.get("c1").waiting_area.enter(name, self.wall())
        return space.id


def make_world(*, max_participants: int = 6, probe_seconds: float = 0.0,
               block_kbps: float = 180) -> World:
    registry = make_registry(max_participants)
    endpoints = Endpoints()
    events = RecordingEvents()
    wall, mono = FakeClock(1_700_000_000.0), FakeClock(100.0)
    settings = CallsSettings(
        max_participants=max_participants, probe_seconds=probe_seconds,
        admission=AdmissionSettings(max_participants=max_participants, block_kbps=block_kbps))
    calls = Calls(registry=registry, new_endpoint=endpoints, events=events, settings=settings,
                  clock=wall, monotonic=mono)
    return World(calls, registry, endpoints, events, wall, mono)


@pytest.fixture
def world() -> World:
    return make_world()
