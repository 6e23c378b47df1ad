"""Several nodes, one service: shared state in Redis (docs/cluster.md).

Every node is a full server. What nodes must share lives in Redis: clinics made through the API,
each clinic's waiting list (without patient names), where each call is placed, revoked invites,
and each node's load with a heartbeat. A call lives on exactly one node, so media never crosses
nodes; the packet path never touches Redis. Without a ``[cluster]`` section none of this runs.
"""

from sfu.cluster.settings import ClusterSettings

__all__ = ["ClusterSettings"]
