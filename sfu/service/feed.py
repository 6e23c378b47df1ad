"""The live waiting-area feed: staff dashboards that sent ``{"type":"watch","waiting_area":true}``.

Each watcher gets ``{"type":"waiting_area","clinic",...}`` at once and again on every change of
that clinic's waiting area. The only edge state here is who watches what.
"""

from __future__ import annotations

from typing import Any, Protocol

from sfu.auth import Claims
from sfu.errors import ApiError, forbidden
from sfu.rooms import ClinicRegistry, require_member


class Watcher(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class WaitingAreaFeed:
    def __init__(self, registry: ClinicRegistry) -> None:
        self.registry = registry
        self._watching: dict[Watcher, str] = {}  # watcher -> clinic id

    def watch(self, watcher: Watcher, claims: Claims, clinic_id: str) -> None:
        """Staff of the clinic only (403); an unknown clinic is 404."""
        try:
            require_member(claims, clinic_id)
        except ApiError:
            raise forbidden("only staff of this clinic may watch its waiting area") from None
        self.registry.get(clinic_id)
        self._watching[watcher] = clinic_id
        watcher.send(self.message(clinic_id))

    def unwatch(self, watcher: Watcher) -> None:
        self._watching.pop(watcher, None)

    def message(self, clinic_id: str) -> dict[str, Any]:
        clinic = self.registry.get(clinic_id)
        return {"type": "waiting_area", "clinic": clinic_id, **clinic.waiting_area.to_json()}

    def changed(self, clinic_id: str) -> None:
        watchers = [w for w, c in self._watching.items() if c == clinic_id]
        if watchers and self.registry.find(clinic_id) is not None:
            message = self.message(clinic_id)
            for watcher in watchers:
                watcher.send(message)
