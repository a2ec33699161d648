"""Each reply of a redis-py or valkey client bounded as a whole by its socket timeout.

redis-py's ``socket_timeout`` (cachectl's ``--timeout``) bounds each read of the socket.
``bound_each_reply`` makes the connections of a client, whatever their class (TCP, TLS,
Unix socket, Sentinel-managed, a cluster node's), read through a ``DeadlineSocket`` armed
by ``read_response``: the one call redis-py makes for every reply, of a command, of
a pipeline's commands one by one, of a sweep's script step. A reply that has not arrived
whole within the timeout is redis-py's TimeoutError, which cachectl reports as exit 3.
"""

from __future__ import annotations

from typing import Any

from cachectl.backends.deadline import DeadlineSocket
from cachectl.backends.redis_clients import is_cluster

_bounded_classes: dict[type, type] = {}


def _bounded(base: type) -> type:
    """``base`` (a redis-py connection class) with each reply bounded; one per base."""
    if getattr(base, "_cachectl_bounded", False):
        return base
    if base not in _bounded_classes:

        class Bounded(base):
            _cachectl_bounded = True

            def _connect(self) -> Any:
                return DeadlineSocket(super()._connect(), self.socket_timeout)

            def read_response(self, *args: Any, **kwargs: Any) -> Any:
                sock = self._sock
                if not isinstance(sock, DeadlineSocket):
                    return super().read_response(*args, **kwargs)
                sock.expect_reply()
                try:
                    return super().read_response(*args, **kwargs)
                finally:
                    sock.reply_done()

        Bounded.__name__ = Bounded.__qualname__ = f"Bounded{base.__name__}"
        _bounded_classes[base] = Bounded
    return _bounded_classes[base]


def _bound_pool(pool: Any, drop_connections: bool = False) -> None:
    connection_class = getattr(pool, "connection_class", None)
    if isinstance(connection_class, type) and hasattr(connection_class, "_connect"):
        pool.connection_class = _bounded(connection_class)
        if drop_connections:  # made before (a cluster's start-up): made again, bounded
            pool.disconnect()
            pool.reset()


def bound_each_reply(client: Any) -> None:
    """Bound every reply ``client`` reads (see above). Before its first command, for a
    plain or Sentinel client; a cluster's nodes, which the client connected to at its
    creation, are made to reconnect, and the nodes it meets later are bounded too."""
    if not is_cluster(client):
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            _bound_pool(pool)
        return
    manager = client.nodes_manager
    create = manager.create_redis_node

    def create_bounded(*args: Any, **kwargs: Any) -> Any:
        node = create(*args, **kwargs)
        _bound_pool(node.connection_pool)
        return node

    manager.create_redis_node = create_bounded
    for node in client.get_nodes():
        if node.redis_connection is not None:
            _bound_pool(node.redis_connection.connection_pool, drop_connections=True)
