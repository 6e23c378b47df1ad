"""What the cluster keeps in Redis: the keys, their JSON, and the scripts that must be atomic.

Every key starts with the configured prefix (``sfu`` by default):

=============================  ======  ======================================================
key                            type    holds
=============================  ======  ======================================================
``P:nodes``                    hash    node id -> its advertise URL (every node that joined)
``P:node:<node>``              string  the node's load report (JSON), expires after 3 heartbeats
``P:load``                     zset    node id -> calls placed on it (the placement's measure)
``P:calls:<node>``             set     the call keys placed on the node
``P:call:<clinic>:<kind>:<id>``string  the node a call (``space`` or ``room``) lives on
``P:clinics``                  set     the clinic ids
``P:clinic:<clinic>``          hash    ``name``, ``closed`` ("1"/"0"), ``message``, ``room:<id>``
                                       -> the room's name: one field each, so two nodes changing
                                       one clinic at once (two rooms made) both keep theirs
``P:spaces:<clinic>``          hash    space id -> {status, waiting_since, patient, host,
                                       participants [{id, role}], lost_at}; never a name
``P:revoked:<clinic>``         hash    revoked guest invite id -> until when (epoch s)
``P:unplaced``                 zset    "<clinic>/<space>" no node hosts -> since when
``P:lost:<node>``              string  the lock of the node that hands a lost node's calls back
``P:events``                   pubsub  what changed (see ``ClusterNode._on_event``)
=============================  ======  ======================================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Place a call: the node it already lives on, or the candidate with the fewest calls placed
# (ties: the first in the caller's order) among those whose load report is there and does not
# say draining (the caller's view of the nodes may be a heartbeat old), recorded in one step so
# two nodes placing the same call at once agree. KEYS: call key, load zset. ARGV: prefix,
# candidate node ids.
PLACE = """
local host = redis.call('GET', KEYS[1])
if host then return host end
local best, best_score = nil, nil
for i = 2, #ARGV do
  local report = redis.call('GET', ARGV[1] .. ':node:' .. ARGV[i])
  if report and not cjson.decode(report).draining then
    local s = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[i]) or '0')
    if best == nil or s < best_score then best, best_score = ARGV[i], s end
  end
end
if best == nil then return false end
redis.call('SET', KEYS[1], best)
redis.call('ZINCRBY', KEYS[2], 1, best)
redis.call('SADD', ARGV[1] .. ':calls:' .. best, KEYS[1])
return best
"""

# Release a call placed on a node (only if it is still there). KEYS: call key, load zset.
# ARGV: prefix, node id.
RELEASE = """
redis.call('SREM', ARGV[1] .. ':calls:' .. ARGV[2], KEYS[1])
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZINCRBY', KEYS[2], -1, ARGV[2])
  return 1
end
return 0
"""


def _compact(record: Any) -> str:
    """A record dataclass as compact JSON, keys sorted (the same record, the same text)."""
    return json.dumps(asdict(record), separators=(",", ":"), sort_keys=True)


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes = f"{prefix}:nodes"
        self.load = f"{prefix}:load"
        self.clinics = f"{prefix}:clinics"
        self.events = f"{prefix}:events"
        self.unplaced = f"{prefix}:unplaced"

    def node(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def calls(self, node: str) -> str:
        return f"{self.prefix}:calls:{node}"

    def call(self, clinic: str, kind: str, id: str) -> str:
        return f"{self.prefix}:call:{clinic}:{kind}:{id}"

    def parse_call(self, key: str) -> tuple[str, str, str] | None:
        """(clinic, kind, id) of a call key; ids never hold ':' (``valid_id``)."""
        parts = key.split(":")
        if len(parts) != 5 or parts[0] != self.prefix or parts[1] != "call":
            return None
        return parts[2], parts[3], parts[4]

    def clinic(self, clinic: str) -> str:
        return f"{self.prefix}:clinic:{clinic}"

    def spaces(self, clinic: str) -> str:
        return f"{self.prefix}:spaces:{clinic}"

    def revoked(self, clinic: str) -> str:
        return f"{self.prefix}:revoked:{clinic}"

    def lost(self, node: str) -> str:
        return f"{self.prefix}:lost:{node}"


@dataclass
class SpaceRecord:
    """A space as every node sees it. No name: the host keeps those in memory."""

    status: str
    waiting_since: float
    patient: str  # the patient's opaque identity (the token's sub)
    host: str  # "" while no node hosts it (its node was lost or drained)
    participants: list[dict[str, str]] = field(default_factory=list)  # [{id, role}]
    lost_at: float = 0.0

    def dumps(self) -> str:
        return _compact(self)

    @classmethod
    def loads(cls, text: str | bytes) -> SpaceRecord | None:
        try:
            raw: Any = json.loads(text)
            return cls(status=str(raw["status"]), waiting_since=float(raw["waiting_since"]),
                       patient=str(raw["patient"]), host=str(raw["host"]),
                       participants=[{"id": str(p["id"]), "role": str(p["role"])}
                                     for p in raw.get("participants", [])],
                       lost_at=float(raw.get("lost_at", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class ClinicRecord:
    name: str
    rooms: dict[str, str] = field(default_factory=dict)  # id -> name
    closed: bool = False
    message: str = ""

    def fields(self) -> dict[str, str]:
        """The clinic's hash."""
        return {"name": self.name, "closed": "1" if self.closed else "0", "message": self.message,
                **{f"room:{k}": v for k, v in self.rooms.items()}}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> ClinicRecord | None:
        if "name" not in fields:
            return None
        return cls(name=fields["name"],
                   rooms={k[len("room:"):]: v for k, v in fields.items() if k.startswith("room:")},
                   closed=fields.get("closed") == "1", message=fields.get("message", ""))


@dataclass
class NodeLoad:
    """A node's load report: what placement and ``GET /v1/cluster`` read."""

    url: str
    participants: int = 0
    calls: int = 0
    cpu: float = 0.0  # percent of one core over the last heartbeat
    draining: bool = False
    started: float = 0.0

    def dumps(self) -> str:
        return _compact(self)

    @classmethod
    def loads(cls, text: str | bytes) -> NodeLoad | None:
        try:
            raw: Any = json.loads(text)
            return cls(url=str(raw["url"]), participants=int(raw.get("participants", 0)),
                       calls=int(raw.get("calls", 0)), cpu=float(raw.get("cpu", 0.0)),
                       draining=bool(raw.get("draining", False)),
                       started=float(raw.get("started", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None
