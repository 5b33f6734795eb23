"""The CLI for people: every expected failure is one line and exit status 2, `--help` loads
nothing heavy and documents every command, `--version` answers.

The failures run the real `driftloop` in a subprocess against addresses where nothing
listens (a port bound and released: connections are refused at once).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.cli.__main__ import COMMANDS, FOREGROUND, HelpFormatter, build_parser
from driftloop.cli.failures import UsageError, explain
from driftloop.kafka.local_broker import free_port

# What `--help` must not import (each costs from 0.1 to 0.5 s, and `--help` needs none).
HEAVY = ("grpc", "pyarrow", "chdb", "numpy", "aiokafka", "clickhouse_connect", "pydantic")


def driftloop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "driftloop.cli", *args],
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 2, nothing on stdout, one line on stderr that says `expected`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith("driftloop: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", result
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command that runs (not a group of commands), with its words."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [(path, parser)]
    return [
        leaf
        for name, child in groups[0].choices.items()
        for leaf in leaf_commands(child, (*path, name))
    ]


LEAVES = leaf_commands(build_parser())


def test_malformed_row_json_is_one_line() -> None:
    result = driftloop("predict", "--model", "churn", "--row", '{"age": 41,')
    assert_one_line(result, "--row", "not valid JSON")
    result = driftloop("predict", "--model", "churn", "--row", "[1, 2]")
    assert_one_line(result, "--row", "a JSON object is needed")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "rows.jsonl"
    result = driftloop("predict", "--model", "churn", "--rows", str(missing))
    assert_one_line(result, str(missing), "No such file")
    result = driftloop(
        "models", "register", "--model", "m", "--data", str(missing), "--target", "y"
    )
    assert_one_line(result, "--data", "no such file")


def test_a_missing_file_a_setting_names_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    env = {"DRIFTLOOP_TLS_CA_FILE": str(missing)}
    result = driftloop("models", "list", "--model", "churn", env=env)
    assert_one_line(result, str(missing), "(set by DRIFTLOOP_TLS_CA_FILE)")


def test_a_bad_line_of_rows_names_the_line(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"age": 41}\n{"age": \n')
    result = driftloop("predict", "--model", "churn", "--rows", str(rows))
    assert_one_line(result, f"{rows} line 2", "not valid JSON")


def test_a_malformed_tag_is_one_line() -> None:
    result = driftloop("models", "register", "--model", "m", "--data", "x.csv", "--tag", "foo")
    assert_one_line(result, "--tag", "'foo' is not key=value", "driftloop models register --help")


def test_a_bad_time_is_one_line() -> None:
    result = driftloop("models", "history", "--model", "churn", "--at", "yesterday")
    assert_one_line(result, "--at", "'yesterday' is not an ISO time")


def test_an_unknown_command_or_missing_option_is_one_line() -> None:
    assert_one_line(driftloop("nosuch"), "invalid choice")
    assert_one_line(driftloop("models", "list"), "--model")


@pytest.mark.parametrize(
    ("args", "service", "variable"),
    [
        (("models", "list", "--model", "churn"), "registry", "DRIFTLOOP_REGISTRY_TARGET"),
        (("predict", "--model", "churn", "--row", "{}"), "gateway", "DRIFTLOOP_GATEWAY_TARGET"),
        (("drift", "alerts", "--model", "churn"), "drift", "DRIFTLOOP_DRIFT_TARGET"),
        (("retrain", "runs", "churn"), "retrainer", "DRIFTLOOP_REGISTRY_TARGET"),
        (("shadow", "status"), "shadow", "DRIFTLOOP_SHADOW_TARGET"),
    ],
)
def test_an_unreachable_service_names_itself_its_address_and_variable(
    args: tuple[str, ...], service: str, variable: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = driftloop(*args, env={variable: address, "DRIFTLOOP_RETRIES": "0"})
    assert_one_line(result, f"{service} unreachable at {address}", variable)


def test_an_unreachable_broker_is_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = driftloop("topics", env={"DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": address})
    assert_one_line(result, f"Kafka unreachable at {address}", "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS")


def test_an_unreachable_clickhouse_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = driftloop("schema", "apply", env={"DRIFTLOOP_CLICKHOUSE_URL": url})
    assert_one_line(result, "ClickHouse", url, "DRIFTLOOP_CLICKHOUSE_URL")


def test_an_embedded_clickhouse_folder_in_use_is_one_line(tmp_path: Path) -> None:
    tmp_path.joinpath("clickhouse").mkdir()
    with tmp_path.joinpath("clickhouse", ".driftloop.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running service holds it
        env = {"DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "clickhouse")}
        result = driftloop("schema", "apply", env=env)
    assert_one_line(result, "ClickHouse", "is open in another process", "DRIFTLOOP_CLICKHOUSE_URL")


def test_a_local_broker_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "no-jars"
    empty.mkdir()
    env = {"DRIFTLOOP_KAFKA_LIBS": str(empty)}
    result = driftloop("kafka", "--data-dir", str(tmp_path / "kafka"), env=env)
    assert_one_line(result, f"DRIFTLOOP_KAFKA_LIBS={empty}: no kafka_*.jar")


def test_up_with_kafka_security_but_no_broker_address_is_one_line(tmp_path: Path) -> None:
    """A local broker speaks plaintext: `up` refuses to start one for a secured setup."""
    env = {
        "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTLOOP_KAFKA_SASL_USERNAME": "app",
        "DRIFTLOOP_KAFKA_SASL_PASSWORD": "hunter2",
    }
    result = driftloop("up", "--data-dir", str(tmp_path / "data"), env=env)
    assert_one_line(
        result,
        "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL=SASL_SSL, DRIFTLOOP_KAFKA_SASL_USERNAME, "
        "DRIFTLOOP_KAFKA_SASL_PASSWORD set without DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS",
        "plaintext only; set DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS to the secured cluster",
    )
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing made, no broker started


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    result = driftloop("models", "list", "--model", "churn", env={"DRIFTLOOP_TIMEOUT_S": "-1"})
    assert_one_line(result, "DRIFTLOOP_TIMEOUT_S")


def test_debug_shows_the_traceback_of_an_expected_failure() -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {"DRIFTLOOP_REGISTRY_TARGET": address, "DRIFTLOOP_RETRIES": "0"}
    result = driftloop("--debug", "models", "list", "--model", "churn", env=env)
    assert result.returncode == 1 and "Traceback" in result.stderr, result
    assert "Unavailable" in result.stderr


def test_a_bug_is_not_an_expected_failure() -> None:
    # main re-raises what explain does not know: its traceback shows.
    assert explain(KeyError("model")) is None
    assert explain(RuntimeError("unexpected")) is None
    assert explain(UsageError("give both --start and --end")) == "give both --start and --end"
    assert explain(FileNotFoundError(2, "No such file", "x.csv")) == "x.csv: No such file"


def test_version() -> None:
    result = driftloop("--version")
    assert result.returncode == 0 and result.stdout.startswith("driftloop 0."), result


def imported_by_help(*args: str) -> set[str]:
    """The heavy modules loaded by `driftloop ARGS --help`, in a fresh interpreter."""
    script = (
        "import sys\n"
        "from driftloop.cli.__main__ import main\n"
        "try:\n"
        f"    main({[*args, '--help']!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split("\n")[-2].split())


def test_help_imports_nothing_heavy() -> None:
    assert imported_by_help() == set()
    for words, _ in LEAVES:
        assert imported_by_help(*words) == set(), words


def test_every_command_has_a_description_an_example_defaults_and_json() -> None:
    for words, parser in LEAVES:
        text = " ".join(parser.format_help().split())
        assert parser.description, words
        assert "example" in parser.description, words
        for action in parser._actions:
            if HelpFormatter.has_default(action):
                shown = f"(default: {action.default})" in text
                assert shown or "default" in (action.help or ""), (words, action.dest)
        has_json = "--json" in parser._option_string_actions
        assert has_json == (words[0] not in FOREGROUND), words


def test_the_summaries_listed_are_the_commands_own() -> None:
    parser = build_parser()
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {action.dest: action.help for action in groups[0]._choices_actions}
    assert listed == {name: summary for name, (_, summary) in COMMANDS.items()}


def test_settings_json_is_pure_json() -> None:
    result = driftloop("settings", "--json")
    assert result.returncode == 0, result
    assert isinstance(json.loads(result.stdout), list)
    result = driftloop("schema", "print", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["statements"], result
