"""What the control plane tells the edge: two small interfaces, both called synchronously.

- :class:`Client` is one participant's client (the signaling session renders each call as a
  WebSocket message). It must only queue work: never await, never raise.
- :class:`CallEvents` is the server's observers: metrics, webhooks. Ids only, never names.

``tests/calls/fakes.py`` has recording versions of both for the unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sfu.transport.endpoint import TrackInfo


@dataclass(frozen=True)
class Member:
    """A participant as the others see it (``{"id","name","role"}`` in the contract)."""

    id: str
    name: str
    role: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role}


@dataclass(frozen=True)
class CallKey:
    """Which call: a clinic's space or meeting room."""

    clinic: str
    kind: str  # "space" or "room"
    id: str

    def target(self) -> dict[str, str]:
        return {self.kind: self.id}

    def ids(self) -> dict[str, str]:
        """Opaque ids for logs and webhooks."""
        return {"clinic": self.clinic, self.kind: self.id}


@dataclass(frozen=True)
class QualityNotice:
    """A receiver's quality level changed (or an admission degraded it)."""

    participant: str
    level: str  # "good", "degraded", "audio_only"
    reason: str
    estimates: dict[str, Any] = field(default_factory=dict)  # kbit/s, ms, loss, paused publishers
    admission: bool = False  # caused by a newcomer's admission


class Client(Protocol):
    """One participant's client, as the control plane speaks to it."""

    def joined(self, me: Member, key: CallKey, others: list[Member]) -> None: ...
    def offer(self, sdp: str, tracks: list[TrackInfo]) -> None: ...
    def member_joined(self, member: Member) -> None: ...
    def member_left(self, member: Member) -> None: ...
    def quality(self, notice: QualityNotice) -> None: ...
    def publish_layers(self, layers: dict[str, bool]) -> None:
        """Which of its simulcast layers (by RID) anyone receives: it may stop the others."""
    def video_layers(self, layers: dict[str, Any]) -> None:
        """Which layer this receiver gets of each participant's video (None: paused)."""
    def failed(self, code: str, message: str) -> None:
        """The participant is out with an error: refused by the probe (``insufficient_bandwidth``)
        or its media failed (``media_failed``). The client is done."""

    def ended(self, reason: str) -> None:
        """The participant is out of the call (ended by staff, replaced, media failed...)."""

    def precall_result(self, result: dict[str, Any]) -> None: ...
    def precall_upload(self, kbps: float, seconds: float) -> None:
        """Ask a pre-call client to send ``kbps`` of filler over its socket within ``seconds``
        (``precall_upload``): the uplink probe."""
    def precall_uploaded(self, total: int) -> None:
        """Acknowledge the filler counted so far (bytes): the client keeps little in flight, so
        that a slow uplink is not left with seconds of it queued."""


class CallEvents(Protocol):
    """What the server's observers hear from the control plane (ids only)."""

    def participant_joined(self, key: CallKey, participant: str, role: str) -> None: ...
    def participant_left(self, key: CallKey, participant: str, reason: str) -> None: ...
    def join_refused(self, role: str, code: str, ids: dict[str, str]) -> None:
        """A join was refused; ``ids``: the clinic and the space or room asked for, if known."""
    def quality_changed(self, participant: str, level: str) -> None: ...
    def estimates(self, up_kbps: float | None, down_kbps: float | None,
                  rtt: float | None) -> None: ...
    def first_media(self, seconds: float) -> None: ...
    def patient_waited(self, seconds: float) -> None: ...
