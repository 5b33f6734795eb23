"""Routing: which version serves a request, by the model's policy. Pure and deterministic.

Sticky assignment hashes (salt, entity key) into 10,000 buckets. A/B variants own
contiguous bucket ranges in the order they are listed, so changing weights moves only
the buckets between the old and the new boundaries; a canary's candidate owns buckets
[0, weight), so a ramp only ever moves keys from stable to the candidate. Requests
without an entity key hash their request id (assigned per request).

Precedence: A/B variants when the policy has them; else a blue-green switch in its hold
period (the new version serves everything); else the canary split; else stable. Shadow
mirroring is decided separately, per request, and composes with all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from driftloop.v1 import events_pb2

BUCKETS = 10_000
STABLE = "stable"
CANARY = "canary"
GREEN = "green"


def bucket(salt: str, key: str) -> int:
    """The bucket of a key: the same on every replica, for every release of driftloop."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class Route:
    version: str
    variant: str


def route(policy: events_pb2.RoutingPolicy, entity_key: str, request_id: str) -> Route:
    key = entity_key or request_id
    if policy.variants:
        b = bucket(policy.salt, key)
        upper = 0
        for variant in policy.variants:
            upper += variant.weight_bp
            if b < upper:
                return Route(variant.version, variant.name)
        last = policy.variants[-1]
        return Route(last.version, last.name)
    if policy.blue_green.active_version:
        return Route(policy.blue_green.active_version, GREEN)
    canary = policy.canary
    if (
        canary.candidate_version
        and canary.current_step < len(canary.steps)
        and bucket(policy.salt, key) < canary.steps[canary.current_step].weight_bp
    ):
        return Route(canary.candidate_version, CANARY)
    return Route(policy.stable_version, STABLE)


def shadow_versions(policy: events_pb2.RoutingPolicy, request_id: str) -> list[str]:
    """The shadow versions this request is mirrored to (none when not sampled)."""
    shadow = policy.shadow
    if not shadow.versions or shadow.sample_bp == 0:
        return []
    if (
        shadow.sample_bp >= BUCKETS
        or bucket(f"shadow\0{policy.salt}", request_id) < shadow.sample_bp
    ):
        return list(shadow.versions)
    return []
