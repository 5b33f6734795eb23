"""Content-addressed artifact store: an artifact's name is its SHA-256, checked on every read.

The local store keeps `<root>/<first two hex>/<sha256>`; writes go through a temporary
file and a rename, so a reader never sees half an artifact. An artifact whose bytes no
longer hash to its name is refused (DATA_LOSS) and never loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from driftloop.kit.errors import DataLoss, InvalidArgument, NotFound, shown

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactSource(Protocol):
    """Where loading reads an artifact from (a store, or one local file)."""

    def get(self, digest: str) -> bytes: ...

    def verified_path(self, digest: str) -> Path: ...


class ArtifactStore(ArtifactSource, Protocol):
    def put(self, data: bytes) -> str: ...


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        if not SHA256.fullmatch(digest):
            raise InvalidArgument("artifact_sha256", f"{shown(digest)} is not a SHA-256 hex digest")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sha256_of(data)
        path = self._path(digest)
        if path.exists() and sha256_of(path.read_bytes()) == digest:
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(handle.name).replace(path)
        return digest

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} is not in the store at {self.root}") from None
        actual = sha256_of(data)
        if actual != digest:
            raise DataLoss(
                f"artifact {digest} failed verification: its bytes hash to {actual}; "
                "it was modified or corrupted and will not be loaded"
            )
        return data

    def verified_path(self, digest: str) -> Path:
        """The artifact's file, after checking its hash (for flavors that load a path)."""
        self.get(digest)
        return self._path(digest)
