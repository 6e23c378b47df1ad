from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from sfu.auth import Claims
from sfu.bandwidth import BandwidthSettings
from sfu.calls.call import Participant
from sfu.calls.manager import Calls
from sfu.rooms import ClinicRegistry
from sfu.rooms.settings import ClinicSettings, LimitsSettings, RoomSettings, WaitingAreaSettings
from tests.calls.fakes import Endpoints, FakeClock, FakeEndpoint, RecordingClient, RecordingEvents


def make_registry(max_participants: int = 6) -> ClinicRegistry:
    return ClinicRegistry([ClinicSettings("c1", "Clinic one", rooms=[RoomSettings("team", "Team")])],
                          limits=LimitsSettings(max_participants=max_participants),
                          waiting_area=WaitingAreaSettings())


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
               block_kbps: int = 180) -> World:
    registry = make_registry(max_participants)
    endpoints = Endpoints()
    events = RecordingEvents()
    wall, mono = FakeClock(1_700_000_000.0), FakeClock(100.0)
    calls = Calls(registry=registry, new_endpoint=endpoints, events=events,
                  limits=LimitsSettings(max_participants=max_participants),
                  bandwidth=BandwidthSettings(probe_seconds=probe_seconds, block_kbps=block_kbps),
                  clock=wall, monotonic=mono)
    return World(calls, registry, endpoints, events, wall, mono)


@pytest.fixture
def world() -> World:
    return make_world()
