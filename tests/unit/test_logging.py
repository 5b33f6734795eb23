from __future__ import annotations

import json
import logging

import pytest

from driftloop.kit.logging import configure_logging, log_context


def test_json_lines_carry_context_and_extras(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = logging.getLogger("driftloop.test")
    with log_context(model="churn", request_id="r-1"):
        log.info("served %s rows", 3, extra={"latency_us": 120})
    log.info("outside")
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["message"] == "served 3 rows"
    assert first["model"] == "churn"
    assert first["request_id"] == "r-1"
    assert first["latency_us"] == 120
    assert first["level"] == "INFO"
    assert "model" not in second


def test_text_format_appends_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", "text")
    with log_context(model="churn"):
        logging.getLogger("driftloop.test").debug("hello")
    line = capsys.readouterr().out.strip()
    assert line.endswith("hello model=churn")
    assert "DEBUG" in line


def test_a_coordinator_not_ready_yet_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error(
        "Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError"
    )
    coordinator.error("Heartbeat failed: %r", "something else")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # aiokafka logs at WARNING and above here: the demoted line is not shown, the real
    # error still is.
    assert [line["level"] for line in lines] == ["ERROR"]
    assert "Heartbeat failed" in lines[0]["message"]
    configure_logging("DEBUG", "json")
    coordinator.setLevel(logging.DEBUG)
    coordinator.error("Group Coordinator Request failed: GroupCoordinatorNotAvailableError")
    (line,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert line["level"] == "INFO"
    coordinator.setLevel(logging.NOTSET)
