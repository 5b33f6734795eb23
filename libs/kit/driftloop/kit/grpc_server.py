"""The gRPC server every driftloop service runs: asyncio, health, reflection, TLS,
admin-token checks, error mapping, metrics, and a graceful stop.

A service's composition root builds one `GrpcServer`, registers its servicers, starts it,
marks it ready once its dependencies are up (health turns SERVING only then), waits for
SIGTERM and stops it with a grace period that lets in-flight calls finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from driftloop.kit.errors import CannotStart
from driftloop.kit.handlers import RPC_KINDS, Handler, HandlerWrapper
from driftloop.kit.metrics import MetricsEndpoint
from driftloop.kit.settings import GrpcServerSettings, variables
from driftloop.v1 import options_pb2

log = logging.getLogger(__name__)

# The health service name that answers SERVING as long as the process serves gRPC at all.
LIVENESS = "liveness"


def admin_methods(services: Iterable[ServiceDescriptor]) -> frozenset[str]:
    """The full method paths ("/pkg.Service/Method") marked as admin in the protos."""
    return frozenset(
        f"/{service.full_name}/{method.name}"
        for service in services
        for method in service.methods
        if method.GetOptions().Extensions[options_pb2.admin]
    )


class GrpcServer:
    def __init__(self, name: str, settings: GrpcServerSettings) -> None:
        self.name = name
        self._settings = settings
        self._services: list[tuple[ServiceDescriptor, object]] = []
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._metrics: MetricsEndpoint | None = None
        self.port: int = 0
        self.metrics_port: int | None = None

    def add_service(self, descriptor: ServiceDescriptor, servicer: object) -> None:
        """Serve `descriptor`'s methods with the servicer's methods of the same names."""
        self._services.append((descriptor, servicer))

    async def start(self) -> int:
        """Bind and start serving (health NOT_SERVING until `set_ready`); return the port.
        A port that cannot be listened on raises CannotStart naming its variable."""
        settings = self._settings
        check_listenable(settings, "port")
        check_listenable(settings, "metrics_port")
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        descriptors = [descriptor for descriptor, _ in self._services]
        wrapper = HandlerWrapper(admin_methods(descriptors), token)
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        if settings.max_connection_age_s is not None:
            options += [
                ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", int(settings.grace_period_s * 1000)),
            ]
        server = grpc.aio.server(options=options)
        for descriptor, servicer in self._services:
            handlers = {
                method.name: wrapper.wrap(
                    f"/{descriptor.full_name}/{method.name}", _handler(method, servicer)
                )
                for method in descriptor.methods
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
            )
            server.add_registered_method_handlers(descriptor.full_name, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [descriptor.full_name for descriptor in descriptors]
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        address = f"{settings.host}:{settings.port}"
        credentials = _server_credentials(settings)
        try:
            if credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, credentials)
        except RuntimeError:  # taken since the check: grpc says no more than "failed"
            self.port = 0
        if self.port == 0:
            raise CannotStart(_unlistenable(settings, "port", "grpc could not bind it"))
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        # Alive, ready or not (a service waiting for Kafka must not be restarted for it):
        # what a liveness probe asks, while readiness asks the server ("").
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        self._server = server
        if settings.metrics_port is not None:
            try:
                self._metrics = MetricsEndpoint(settings.host, settings.metrics_port)
            except OSError as error:  # taken since the check
                await self.stop(0)
                reason = error.strerror or str(error)
                raise CannotStart(_unlistenable(settings, "metrics_port", reason)) from None
            self.metrics_port = self._metrics.port
        log.info(
            "%s listening",
            self.name,
            extra={
                "port": self.port,
                "tls": credentials is not None,
                "metrics_port": self.metrics_port,
            },
        )
        return self.port

    async def set_ready(self, ready: bool = True) -> None:
        """Health SERVING (ready) or NOT_SERVING, for the server and each service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._set_all(status)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight calls finish within the grace period, close."""
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        period = self._settings.grace_period_s if grace is None else grace
        log.info("%s stopping", self.name, extra={"grace_s": period})
        await self._server.stop(period)
        self._server = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    async def _set_all(self, status: int) -> None:
        await self._health.set("", status)
        for descriptor, _ in self._services:
            await self._health.set(descriptor.full_name, status)


def check_listenable(settings: GrpcServerSettings, field: str) -> None:
    """Raise CannotStart when the port `settings.<field>` cannot be listened on at
    `settings.host` (another process listens there, or the address is not this machine's).

    grpc's own bind failure says only "Failed to bind" (and logs the reason to stderr
    itself, a second line), so the port is tried first with a socket as grpc binds it
    (SO_REUSEADDR: a port left in TIME_WAIT is free), on every address the host resolves
    to; one that binds is enough, as for grpc. Port 0 (any free port) is always free."""
    port = getattr(settings, field)
    if not port:
        return
    host = settings.host.strip("[]")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotStart(_unlistenable(settings, field, str(error.strerror))) from None
    reason = "no address"
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                reason = error.strerror or str(error)
                continue
            return
    raise CannotStart(_unlistenable(settings, field, reason))


def _unlistenable(settings: GrpcServerSettings, field: str, reason: str) -> str:
    """One line: which port, why, and the variable that moves it."""
    variable = variables(type(settings), field)[0]
    return (
        f"cannot listen on {settings.host}:{getattr(settings, field)} ({variable}): {reason} "
        f"(stop the process that listens there, or set {variable} to another port)"
    )


def _handler(method: MethodDescriptor, servicer: object) -> Handler:
    """The gRPC handler of one method, from its descriptor and the servicer's coroutine."""
    # A method the servicer lacks gets a sync placeholder, which the wrapper turns into
    # UNIMPLEMENTED (as it does the generated base class's placeholders).
    behavior: Any = getattr(servicer, method.name, _missing)
    deserialize = GetMessageClass(method.input_type).FromString
    serialize = GetMessageClass(method.output_type).SerializeToString
    kind = RPC_KINDS[method.client_streaming, method.server_streaming]
    return kind.make_handler(behavior, deserialize, serialize)


def _missing(request: Any, context: Any) -> None:
    """Stands for a method the servicer does not have (never called: see _handler)."""


def _server_credentials(settings: GrpcServerSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both a certificate and a key file")
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def wait_for_signal(
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> signal.Signals:
    """Wait until the process receives one of `signals`; return which one."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    watched = list(signals)

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in watched:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in watched:
            loop.remove_signal_handler(sig)
