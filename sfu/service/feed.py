"""The live waiting-area feed: staff dashboards that sent ``{"type":"watch","waiting_area":true}``.

Each watcher gets ``{"type":"waiting_area","clinic",...}`` at once and again on every change of
that clinic's waiting area. The only edge state here is who watches what.

In a cluster (``source`` given) the list is every node's (``ClusterNode.waiting_list``, which
asks Redis and the hosting nodes): it is built in a task, at most one at a time per clinic, and a
change that arrives while one is built makes one more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sfu.auth import Claims
from sfu.errors import ApiError, forbidden
from sfu.rooms import ClinicRegistry, require_member

log = logging.getLogger(__name__)


class Watcher(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class WaitingAreaFeed:
    def __init__(self, registry: ClinicRegistry,
                 source: Callable[[str], Awaitable[dict[str, Any]]] | None = None) -> None:
        self.registry = registry
        self._source = source
        self._watching: dict[Watcher, str] = {}  # watcher -> clinic id
        self._building: dict[str, asyncio.Task[None]] = {}  # clinic -> its list being built
        self._again: set[str] = set()  # changed again while being built
        self._waiting_first: dict[Watcher, str] = {}  # new watchers owed their first list

    def watch(self, watcher: Watcher, claims: Claims, clinic_id: str) -> None:
        """Staff of the clinic only (403); an unknown clinic is 404."""
        try:
            require_member(claims, clinic_id)
        except ApiError:
            raise forbidden("only staff of this clinic may watch its waiting area") from None
        self.registry.get(clinic_id)
        self._watching[watcher] = clinic_id
        if self._source is None:
            watcher.send(self.message(clinic_id))
        else:
            self._waiting_first[watcher] = clinic_id
            self.changed(clinic_id)

    def unwatch(self, watcher: Watcher) -> None:
        self._watching.pop(watcher, None)
        self._waiting_first.pop(watcher, None)

    def message(self, clinic_id: str) -> dict[str, Any]:
        clinic = self.registry.get(clinic_id)
        return {"type": "waiting_area", "clinic": clinic_id, **clinic.waiting_area.to_json()}

    def changed(self, clinic_id: str) -> None:
        watchers = [w for w, c in self._watching.items() if c == clinic_id]
        if not watchers or self.registry.find(clinic_id) is None:
            return
        if self._source is None:
            message = self.message(clinic_id)
            for watcher in watchers:
                watcher.send(message)
        elif clinic_id in self._building:
            self._again.add(clinic_id)
        else:
            task = asyncio.ensure_future(self._build(clinic_id))
            self._building[clinic_id] = task

    async def _build(self, clinic_id: str) -> None:
        assert self._source is not None
        try:
            while True:
                self._again.discard(clinic_id)
                try:
                    body = await self._source(clinic_id)
                except ApiError as exc:
                    log.warning("waiting list of clinic %s not built: %s", clinic_id, exc.message)
                    return
                message = {"type": "waiting_area", "clinic": clinic_id, **body}
                for watcher, clinic in list(self._watching.items()):
                    if clinic == clinic_id:
                        self._waiting_first.pop(watcher, None)
                        watcher.send(message)
                if clinic_id not in self._again:
                    return
        finally:
            self._building.pop(clinic_id, None)

    async def close(self) -> None:
        """Cancel and await the lists being built."""
        tasks = list(self._building.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
