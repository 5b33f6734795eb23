"""Client channels to driftloop services, with optional TLS and the admin bearer token."""

from __future__ import annotations

from pathlib import Path

import grpc

from driftloop.kit.errors import ErrorCode, Upstream


def open_channel(
    target: str,
    *,
    tls_ca_file: Path | None = None,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    max_message_bytes: int = 16 * 1024 * 1024,
) -> grpc.aio.Channel:
    """An asyncio channel to `target`; TLS when a CA file is given (mutual with cert+key).
    Calls go round-robin over every address the target resolves to (`dns:///name:port` of
    a headless Kubernetes Service: each replica), not all to the first one."""
    options = [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if tls_ca_file is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_ca_file.read_bytes(),
        private_key=tls_key_file.read_bytes() if tls_key_file else None,
        certificate_chain=tls_cert_file.read_bytes() if tls_cert_file else None,
    )
    return grpc.aio.secure_channel(target, credentials, options=options)


ACTOR_HEADER = "x-driftloop-actor"


def admin_metadata(token: str, actor: str = "") -> tuple[tuple[str, str], ...]:
    """Call metadata that authorises an admin RPC (and names who acts, when given)."""
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)
    return (*metadata, (ACTOR_HEADER, actor)) if actor else metadata


def upstream_error(error: grpc.aio.AioRpcError, what: str = "") -> Upstream:
    """Another service's status as a domain error with the same code, passed on as it is."""
    name = error.code().name
    code = ErrorCode[name] if name in ErrorCode.__members__ else ErrorCode.UNKNOWN
    details = error.details() or name
    return Upstream(code, f"{what}: {details}" if what else details)
