from __future__ import annotations

import pytest

from driftloop.clickhouse.schema import schema_statements


def test_statements_target_the_configured_database() -> None:
    statements = schema_statements("analytics")
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS analytics"
    assert all("driftloop." not in statement for statement in statements)
    assert any("analytics.predictions_labelled" in statement for statement in statements)
    assert all(not statement.rstrip().endswith(";") for statement in statements)


def test_cluster_variant_is_replicated_and_on_cluster() -> None:
    statements = schema_statements("driftloop", cluster="main")
    assert all(" ON CLUSTER main" in statement.splitlines()[0] for statement in statements)
    engines = [
        line for statement in statements for line in statement.splitlines() if "ENGINE" in line
    ]
    assert engines
    assert all(
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}" in line for line in engines
    )
    assert any(line.endswith("'{replica}', time)") for line in engines)


@pytest.mark.parametrize("name", ["drop table x", "a;b", "", "1abc"])
def test_identifiers_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        schema_statements(name)
