"""A single-node Apache Kafka broker (KRaft) for standalone use and for tests.

The broker's jars come from Maven Central (deploy/kafka/pom.xml, `make kafka-jars`) into
.cache/kafka/<version>/libs. `LocalBroker` writes a server.properties, formats the
storage once, starts `kafka.Kafka` in a child process, waits until it serves, and stops
it with SIGTERM (SIGKILL only if it does not exit in time).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.kit.settings import KafkaSettings, variables

READY_LINE = "Kafka Server started"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or stopped."""


# The settings that ask for TLS or SASL, which a local broker does not speak.
SECURITY_FIELDS = (
    "security_protocol",
    "ssl_ca_file",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_key_password",
    "ssl_check_hostname",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
)


def check_plaintext(settings: KafkaSettings) -> None:
    """Raise BrokerError when `settings` ask for a secured cluster but name none.

    Without DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS, `driftloop up` and the demo start a local
    broker, and it speaks plaintext only: clients set for TLS or SASL would wait forever on
    it. A security setting given explicitly (other than PLAINTEXT) says the cluster is
    elsewhere, so its address is missing; the error names those variables (never their
    values, some are secrets)."""
    if settings.bootstrap_servers:
        return
    named = [
        name
        for name in SECURITY_FIELDS
        if name in settings.model_fields_set
        and not (name == "security_protocol" and settings.security_protocol == "PLAINTEXT")
    ]
    if not named:
        return
    shown = [
        f"{variables(KafkaSettings, name)[0]}={settings.security_protocol}"
        if name == "security_protocol"
        else variables(KafkaSettings, name)[0]
        for name in named
    ]
    servers = variables(KafkaSettings, "bootstrap_servers")[0]
    raise BrokerError(
        f"{', '.join(shown)} set without {servers}: the local broker started then speaks "
        f"plaintext only; set {servers} to the secured cluster (or unset those variables "
        "for a local broker)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalBrokerSettings(BaseSettings):
    """Where the local broker's jars are."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_KAFKA_", extra="ignore", env_ignore_empty=True
    )

    libs: Path | None = Field(
        default=None,
        description="folder of the Apache Kafka broker jars the local broker runs from "
        "(`driftloop up`, `demo` and `kafka`, the tests)",
        json_schema_extra={
            "default_text": "the last complete `.cache/kafka/<version>/libs` (`make kafka-jars`)"
        },
    )


def find_kafka_libs(root: Path | None = None) -> Path:
    """The folder of broker jars fetched by `make kafka-jars` (newest complete version)."""
    configured = LocalBrokerSettings().libs
    if configured is not None:
        if not any(configured.glob("kafka_*.jar")):
            raise BrokerError(f"DRIFTLOOP_KAFKA_LIBS={configured}: no kafka_*.jar in that folder")
        return configured
    base = (root or Path.cwd()) / ".cache" / "kafka"
    complete = sorted(base.glob("*/libs/.complete"))
    if not complete:
        raise BrokerError(
            f"no Kafka broker jars under {base}: run `make kafka-jars` (Maven fetches them once)"
        )
    return complete[-1].parent


@dataclass(frozen=True)
class SaslSslListener:
    """A second listener that speaks SASL over TLS, as managed Kafka services do: the
    broker's key and certificate chain in a PKCS12 keystore, and users (name: password)
    who may log in with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. With `client_ca` (PEM) the
    listener also requires a client certificate that CA signed (mutual TLS). The PLAINTEXT
    listener stays (the broker talks to itself over it)."""

    keystore: Path
    keystore_password: str
    users: Mapping[str, str]
    port: int = 0
    client_ca: Path | None = None

    def properties(self) -> dict[str, str]:
        """The server.properties lines of the listener (after the PLAINTEXT ones)."""
        prefix = "listener.name.sasl_ssl."
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        mutual = (
            {
                f"{prefix}ssl.client.auth": "required",
                f"{prefix}ssl.truststore.type": "PEM",
                f"{prefix}ssl.truststore.location": str(self.client_ca),
            }
            if self.client_ca is not None
            else {}
        )
        return mutual | {
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            f"{prefix}ssl.keystore.type": "PKCS12",
            f"{prefix}ssl.keystore.location": str(self.keystore),
            f"{prefix}ssl.keystore.password": self.keystore_password,
            f"{prefix}plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            f"{prefix}scram-sha-256.sasl.jaas.config": scram,
            f"{prefix}scram-sha-512.sasl.jaas.config": scram,
        }

    def scram_credentials(self) -> list[str]:
        """`kafka-storage format` arguments that store each user's SCRAM credentials (KRaft
        keeps them in the metadata log, so they are written when the storage is formatted)."""
        return [
            f"--add-scram={mechanism}=[name={name},password={password}]"
            for mechanism in SASL_MECHANISMS
            if mechanism.startswith("SCRAM")
            for name, password in self.users.items()
        ]


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class LocalBroker:
    """One KRaft broker+controller process on 127.0.0.1, its data under `data_dir`;
    optionally with a SASL_SSL listener besides the PLAINTEXT one."""

    def __init__(
        self,
        libs: Path,
        data_dir: Path,
        *,
        port: int = 0,
        controller_port: int = 0,
        host: str = "127.0.0.1",
        heap: str = "512m",
        java: str | None = None,
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self.libs = libs
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = controller_port or free_port(host)
        self.heap = heap
        self.java = java or _find_java()
        self.sasl_ssl = sasl_ssl
        self.sasl_ssl_port = (sasl_ssl.port or free_port(host)) if sasl_ssl else None
        self._process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        """The address of the SASL_SSL listener (only when the broker has one)."""
        if self.sasl_ssl_port is None:
            raise BrokerError("this broker has no SASL_SSL listener")
        return f"{self.host}:{self.sasl_ssl_port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker and wait until it serves; return its bootstrap address."""
        if self._process is not None:
            return self.bootstrap_servers
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(config)
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()
        self._console = (self.data_dir / "console.log").open("ab")
        self._process = subprocess.Popen(
            self._java_command("kafka.Kafka", str(config)),
            stdout=self._console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait for a clean shutdown, SIGKILL if it does not come in time."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._console is not None:
            self._console.close()
            self._console = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},"
            f"CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            # One node: every internal topic has one replica; few partitions start fast.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        if self.sasl_ssl is not None:
            sasl_ssl = f"SASL_SSL://{self.host}:{self.sasl_ssl_port}"
            properties["listeners"] += f",{sasl_ssl}"
            properties["advertised.listeners"] += f",{sasl_ssl}"
            properties["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            properties |= self.sasl_ssl.properties()
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        return path

    def _format(self, config: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            self._java_command(
                # "=": a random id may start with "-", which the tool would take for an option
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                *(self.sasl_ssl.scram_credentials() if self.sasl_ssl else []),
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def _java_command(self, main: str, *args: str) -> list[str]:
        return [
            self.java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise BrokerError(
                    f"the Kafka broker exited with code {code} during start-up; "
                    f"see {self.data_dir / 'console.log'} and {self.log_file}:\n{self._tail()}"
                )
            ports = [self.port] + ([self.sasl_ssl_port] if self.sasl_ssl_port else [])
            if self._logged_ready() and all(_accepts(self.host, port) for port in ports):
                return
            time.sleep(0.1)
        raise BrokerError(f"the Kafka broker did not start in {timeout:.0f} s:\n{self._tail()}")

    def _logged_ready(self) -> bool:
        try:
            return READY_LINE in self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def _tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.data_dir / "console.log", self.log_file):
            with contextlib.suppress(FileNotFoundError):
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("no `java` on PATH (Java 17+ runs the local Kafka broker)")
    return java


_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the broker's process before it runs: SIGTERM when the process that started it
    dies, even by SIGKILL, so a killed test run or `driftloop up` leaves no broker behind
    (Linux; elsewhere `stop` is the only way)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
