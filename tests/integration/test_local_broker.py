"""The local broker never outlives the process that started it: a test run or a
`driftloop up` killed with SIGKILL (no finally, no atexit) leaves no Kafka behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import REPO

STARTER = """
import sys, time
from pathlib import Path
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
broker = LocalBroker(find_kafka_libs(Path(sys.argv[1])), Path(sys.argv[2]))
broker.start()
print(broker.pid, flush=True)
time.sleep(600)
"""


async def test_a_broker_stops_when_its_starter_is_killed(tmp_path: Path) -> None:
    starter = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STARTER,
        str(REPO),
        str(tmp_path / "kafka"),
        stdout=asyncio.subprocess.PIPE,
    )
    broker_pid = 0
    try:
        assert starter.stdout is not None
        line = await asyncio.wait_for(starter.stdout.readline(), 120)
        broker_pid = int(line)
        assert psutil.pid_exists(broker_pid)
        starter.send_signal(signal.SIGKILL)
        await starter.wait()
        deadline = time.monotonic() + 60
        while psutil.pid_exists(broker_pid) and psutil.Process(broker_pid).status() not in (
            psutil.STATUS_ZOMBIE,
            psutil.STATUS_DEAD,
        ):
            assert time.monotonic() < deadline, "the broker outlived its starter"
            await asyncio.sleep(0.2)
    finally:
        if starter.returncode is None:
            starter.kill()
            await starter.wait()
        if broker_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker_pid, signal.SIGKILL)
