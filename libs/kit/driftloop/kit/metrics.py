"""Prometheus metrics of the server kit, defined once, and the metrics HTTP endpoint."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Histogram, start_http_server

GRPC_HANDLED = Counter(
    "driftloop_grpc_server_handled_total",
    "gRPC calls completed, by service, method and status code.",
    ["service", "method", "code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "driftloop_grpc_server_handling_seconds",
    "Time from the start of a gRPC call to its last response.",
    ["service", "method"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


class MetricsEndpoint:
    """Serves /metrics on its own port in a background thread; `close` stops it."""

    def __init__(self, host: str, port: int) -> None:
        server, thread = start_http_server(port, addr=host)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
