"""`driftloop settings` (driftloop.cli.configuration): the listing of every setting with its
value here, the README table it renders, and the block it rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.cli import configuration
from driftloop.cli.__main__ import main
from driftloop.kit import settings_doc


def test_the_listing_says_where_each_value_comes_from_and_hides_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("DRIFTLOOP_ADMIN_TOKEN", "hunter2")
    monkeypatch.setenv("DRIFTLOOP_GATEWAY_PORT", "6000")
    monkeypatch.delenv("DRIFTLOOP_INFERENCE_PORT", raising=False)
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert (
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS=broker:9092  (environment: KAFKA_BOOTSTRAP_SERVERS)"
        in out
    )
    assert "DRIFTLOOP_ADMIN_TOKEN=********  (environment)" in out
    assert "hunter2" not in out
    assert "DRIFTLOOP_GATEWAY_PORT=6000  (environment)" in out
    assert "DRIFTLOOP_INFERENCE_PORT=50052  (default)" in out


def test_a_bad_variable_fails_the_check_by_name_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLOOP_SHADOW_MIN_SHARE", "2")
    monkeypatch.setenv("DRIFTLOOP_CLICKHOUSE_URL", "http://user:hunter2@host:8123")
    monkeypatch.setenv("DRIFTLOOP_CLICKHOUSE_DATABASE", "bad name;")
    assert main(["settings", "--json"]) == 2
    captured = capsys.readouterr()
    assert "DRIFTLOOP_SHADOW_MIN_SHARE='2'" in captured.err
    assert "DRIFTLOOP_CLICKHOUSE_DATABASE" in captured.err
    assert "hunter2" not in captured.out + captured.err


def test_the_table_is_the_code_s_defaults_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = configuration.markdown()
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PARTITIONS", "12")
    monkeypatch.setenv("DRIFTLOOP_LOG_LEVEL", "DEBUG")
    assert configuration.markdown() == before
    assert "| `DRIFTLOOP_KAFKA_PARTITIONS` | `6` |" in before
    assert "| `DRIFTLOOP_DRIFT_WEBHOOKS` (secret) | empty: off |" in before
    assert "`DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS` (or `KAFKA_BOOTSTRAP_SERVERS`)" in before
    port = "per service: gateway `50051`, inference `50052`, drift `50053`, shadow `50054`"
    assert f"| `DRIFTLOOP_<SERVICE>_PORT` | {port}, retrainer `50055` |" in before


def test_the_readme_block_is_rewritten_between_its_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{configuration.BEGIN}\nold table\n{configuration.END}\nafter\n")
    assert main(["settings", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(f"before\n{configuration.BEGIN}\n| variable |")
    assert text.endswith(f"{configuration.END}\nafter\n")
    assert configuration.block(text) == configuration.markdown()
    assert configuration.rewrite(readme).endswith("up to date")
    readme.write_text("no markers\n")
    assert main(["settings", "--readme", str(readme)]) == 2


def test_a_setting_without_a_description_is_refused() -> None:
    class Undocumented(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_X_")

        known: int = Field(1, description="documented")
        bare: int = 2

    assert settings_doc.setting(Undocumented, "known").names == ("DRIFTLOOP_X_KNOWN",)
    with pytest.raises(ValueError, match=r"Undocumented\.bare has no description"):
        settings_doc.setting(Undocumented, "bare")


def test_a_class_placed_in_no_group_is_refused() -> None:
    class Stray(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_STRAY_")

        known: int = Field(1, description="documented")

    with pytest.raises(ValueError, match=r"no settings group \['Strays'\]"):
        settings_doc.groups(configuration.DOCS, [("Strays", Stray)])
    kafka = settings_doc.groups(configuration.DOCS, [(settings_doc.KAFKA, Stray)])[0]
    assert kafka.settings[-1].name == "DRIFTLOOP_STRAY_KNOWN"
