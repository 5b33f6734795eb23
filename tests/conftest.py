"""Fixtures shared by every test: leak checks, the real Kafka broker, embedded ClickHouse."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from driftloop.clickhouse.backend import EmbeddedBackend
from driftloop.clickhouse.client import ClickHouse
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.topics import ensure_topics
from driftloop.kit.settings import KafkaSettings

REPO = Path(__file__).resolve().parent.parent
_names = itertools.count(1)
# Process-wide threads and processes that libraries start once and keep: not leaks of any
# one test (multiprocessing's resource tracker serves every pool of the test process).
_SINGLETON_THREADS = ("asyncio_", "(_poll_wrapper)")
_SINGLETON_PROCESSES = ("multiprocessing.resource_tracker",)
# Caches of the test tools themselves.
_TOOL_FILES = {".hypothesis", ".pytest_cache"}


def unique_name(prefix: str) -> str:
    """A name no other test of this session uses (topics, databases, groups)."""
    return f"{prefix}{os.getpid()}_{next(_names)}"


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads or child processes behind, or writes files into the
    working directory (services keep their data where they are told, never in the cwd)."""
    files_before = {path.name for path in Path.cwd().iterdir()}
    threads_before = set(threading.enumerate())
    children_before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while True:
        threads = [
            thread
            for thread in set(threading.enumerate()) - threads_before
            if thread.is_alive() and not any(mark in thread.name for mark in _SINGLETON_THREADS)
        ]
        children = [
            child
            for child in psutil.Process().children(recursive=True)
            if child.pid not in children_before
            and child.is_running()
            and child.status() != psutil.STATUS_ZOMBIE
            and not _singleton(child)
        ]
        if (not threads and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not threads, f"the test left threads running: {threads}"
    assert not children, f"the test left processes running: {children}"
    files = {path.name for path in Path.cwd().iterdir()} - files_before - _TOOL_FILES
    assert not files, f"the test wrote into the working directory: {sorted(files)}"


def _singleton(process: psutil.Process) -> bool:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return any(mark in command for mark in _SINGLETON_PROCESSES)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka broker: KAFKA_BOOTSTRAP_SERVERS when set, else a local KRaft broker."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get(
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"
    )
    if configured:
        yield configured
        return
    broker = LocalBroker(find_kafka_libs(REPO), tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
async def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings with a topic prefix of this test's own, the topics created."""
    settings = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=unique_name("test") + ".",
        partitions=3,
    )
    await ensure_topics(settings, kafka_bootstrap)
    return settings


@pytest.fixture(scope="session")
def clickhouse_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """The embedded engine (chDB allows one data folder per process: one per session)."""
    backend = EmbeddedBackend(tmp_path_factory.mktemp("clickhouse"))
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
async def clickhouse(clickhouse_backend: EmbeddedBackend) -> AsyncIterator[ClickHouse]:
    """A database of this test's own with the driftloop schema, dropped afterwards."""
    clickhouse = ClickHouse(clickhouse_backend, unique_name("test_"))
    await clickhouse.apply_schema()
    yield clickhouse
    await clickhouse.command(f"DROP DATABASE IF EXISTS {clickhouse.database}")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port a socket of the test listens on (as another server would)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]
