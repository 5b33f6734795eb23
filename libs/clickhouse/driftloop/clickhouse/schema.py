"""The schema file as statements for one database (and optionally one cluster)."""

from __future__ import annotations

import re
from importlib import resources

from driftloop.kit.settings import IDENTIFIER

_ENGINE = re.compile(r"ENGINE = (Replacing)?MergeTree(\((?P<args>[^)]*)\))?")
# Tables are created if missing (they hold data); views are replaced (they hold none, so
# a changed view reaches existing databases too); a column added later comes with an
# ALTER TABLE ... ADD COLUMN IF NOT EXISTS (so a table made before it gets it).
_CREATE = re.compile(
    r"^(CREATE (?:(?:DATABASE|TABLE) IF NOT EXISTS|OR REPLACE VIEW) [A-Za-z0-9_.]+"
    r"|ALTER TABLE [A-Za-z0-9_.]+)",
    re.MULTILINE,
)
_END = re.compile(r";[ \t]*(?:\n|$)")


def schema_text() -> str:
    return resources.files("driftloop.clickhouse").joinpath("schema.sql").read_text()


def schema_statements(database: str = "driftloop", cluster: str | None = None) -> list[str]:
    """The DDL statements, in order, for `database` (and `cluster`, when set)."""
    for name in (database, cluster):
        if name is not None and not IDENTIFIER.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid ClickHouse identifier")
    text = "\n".join(
        line for line in schema_text().splitlines() if not line.lstrip().startswith("--")
    )
    text = re.sub(r"\bdriftloop\.", f"{database}.", text)
    text = re.sub(r"\bEXISTS driftloop\b", f"EXISTS {database}", text)
    if cluster is not None:
        text = _CREATE.sub(rf"\1 ON CLUSTER {cluster}", text)
        text = _ENGINE.sub(_replicated, text)
    return [statement.strip() for statement in _END.split(text) if statement.strip()]


def _replicated(match: re.Match[str]) -> str:
    kind = match.group(1) or ""
    args = ["'/clickhouse/tables/{shard}/{database}/{table}'", "'{replica}'"]
    if match.group("args"):
        args.append(match.group("args"))
    return f"ENGINE = Replicated{kind}MergeTree({', '.join(args)})"
