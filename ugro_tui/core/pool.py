"""One transport per node, shared: telemetry, the launcher, log followers and the doctor open channels on it.

Whoever runs (the app, `ugro scheduler`, a CLI verb) owns one pool and closes it once; the parts it hands the pool
to never close a transport for good. An SSH transport reconnects on its next call after a drop, so a part that
closes a dead connection (telemetry does, to reconnect) lets every other part go on over the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ugro_tui.config import Cluster, Node
from ugro_tui.core.transport import Transport, make_transport

TransportFactory = Callable[[Node, Cluster], Transport]


class Pool:
    def __init__(self, cluster: Cluster, factory: TransportFactory = make_transport) -> None:
        self.cluster = cluster
        self._factory = factory
        self._transports: dict[str, Transport] = {}

    def get(self, name: str) -> Transport:
        """The node's transport (made on first use); KeyError if the node is not in the cluster."""
        transport = self._transports.get(name)
        if transport is None:
            transport = self._transports[name] = self._factory(self.cluster.node(name), self.cluster)
        return transport

    def for_node(self, node: Node, _cluster: Cluster | None = None) -> Transport:
        """`get` in the shape of a transport factory, for parts that take one."""
        return self.get(node.name)

    def connected(self, name: str) -> int:
        """How many SSH connections this pool holds to the node now (0 or 1)."""
        transport = self._transports.get(name)
        return int(transport is not None and transport.connected)

    def __contains__(self, name: str) -> bool:
        return any(n.name == name for n in self.cluster.nodes)

    def use(self, cluster: Cluster) -> Coroutine[Any, Any, None]:
        """Follow a changed cluster.toml at once: transports of removed or changed nodes leave the pool (await the
        result to close them); the others stay open."""
        old, self.cluster = self.cluster, cluster
        keep = {n.name for n in cluster.nodes if n in old.nodes}
        gone = [t for name, t in self._transports.items() if name not in keep]
        self._transports = {name: t for name, t in self._transports.items() if name in keep}

        async def closing() -> None:
            await asyncio.gather(*(t.close() for t in gone), return_exceptions=True)

        return closing()

    async def close(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
