"""The shadow service's reads and writes in ClickHouse.

- `paired`: a shadow version's rows joined with the live rows of the same requests (and
  their labels): the comparison's input. Of a request's live rows (a failed candidate and
  the stable fallback), the one that answered is taken.
- `variants`: the live rows of a model in a window with their variant, entity key and
  label: the A/B report's input.
- `write_comparison` / `shadow_versions`: the periodic comparisons Grafana plots, and
  which shadow versions had traffic lately.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop.clickhouse.backend import Columns
from driftloop.clickhouse.client import ClickHouse

WINDOW = "time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}"


class ShadowStore:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def paired(
        self, model: str, version: str, start: dt.datetime, end: dt.datetime
    ) -> Columns:
        predictions, labels = self._ch.table("predictions"), self._ch.table("labels")
        sql = (
            "WITH s AS (SELECT request_id, output_value, output_label, latency_us, error, "
            f"toString(output_kind) AS kind FROM {predictions} FINAL "
            "WHERE model = {model:String} AND role = 'shadow' AND version = {version:String} "
            f"AND {WINDOW}), "
            "l AS (SELECT request_id, version AS live_version, output_value AS live_value, "
            "output_label AS live_label, latency_us AS live_latency_us, error AS live_error, "
            "mapKeys(categories) AS category_names, mapValues(categories) AS category_values "
            f"FROM {predictions} FINAL WHERE model = {{model:String}} AND role = 'live' "
            f"AND {WINDOW} AND request_id IN (SELECT request_id FROM s) "
            "ORDER BY request_id, error != '' LIMIT 1 BY request_id) "
            "SELECT s.request_id AS request_id, s.kind AS kind, "
            "s.output_value AS shadow_value, s.output_label AS shadow_label, "
            "toFloat64(s.latency_us) / 1000 AS shadow_latency_ms, s.error != '' AS shadow_error, "
            "l.live_version AS live_version, l.live_value AS live_value, "
            "l.live_label AS live_label, toFloat64(l.live_latency_us) / 1000 AS live_latency_ms, "
            "l.live_error != '' AS live_error, l.category_names AS category_names, "
            "l.category_values AS category_values, t.request_id != '' AS labelled, "
            "t.label AS truth_label, if(t.request_id != '', t.value, nan) AS truth_value "
            "FROM s INNER JOIN l ON s.request_id = l.request_id "
            f"LEFT JOIN (SELECT request_id, label, value FROM {labels} FINAL "
            "WHERE request_id IN (SELECT request_id FROM s)) AS t ON s.request_id = t.request_id "
            "ORDER BY request_id"
        )
        params = {"model": model, "version": version, "start": start, "end": end}
        return await self._ch.query_columns(sql, params)

    async def variants(self, model: str, start: dt.datetime, end: dt.datetime) -> Columns:
        predictions, labels = self._ch.table("predictions"), self._ch.table("labels")
        sql = (
            "WITH p AS (SELECT request_id, variant, version, entity_key, error, "
            "toFloat64(latency_us) / 1000 AS latency_ms, output_value, output_label, "
            f"toString(output_kind) AS kind FROM {predictions} FINAL "
            f"WHERE model = {{model:String}} AND role = 'live' AND {WINDOW}) "
            "SELECT p.*, t.request_id != '' AND p.error = '' AS labelled, "
            "t.label AS truth_label, if(t.request_id != '', t.value, nan) AS truth_value "
            f"FROM p LEFT JOIN (SELECT request_id, label, value FROM {labels} FINAL "
            "WHERE request_id IN (SELECT request_id FROM p)) AS t ON p.request_id = t.request_id"
        )
        return await self._ch.query_columns(sql, {"model": model, "start": start, "end": end})

    async def shadow_versions(self, since: dt.datetime) -> list[tuple[str, str]]:
        """(model, version) of the shadows that answered since `since`."""
        result = await self._ch.query(
            f"SELECT DISTINCT model, version FROM {self._ch.table('predictions')} "
            "WHERE role = 'shadow' AND time >= {since:DateTime64(6, 'UTC')} "
            "ORDER BY model, version",
            {"since": since},
        )
        return [(str(model), str(version)) for model, version in result.rows]

    async def experiments(self, since: dt.datetime, not_arms: tuple[str, ...]) -> list[str]:
        """Models whose live traffic since `since` went to at least two A/B variants."""
        result = await self._ch.query(
            f"SELECT model FROM {self._ch.table('predictions')} "
            "WHERE role = 'live' AND time >= {since:DateTime64(6, 'UTC')} "
            "AND NOT has({not_arms:Array(String)}, variant) "
            "GROUP BY model HAVING uniqExact(variant) >= 2 ORDER BY model",
            {"since": since, "not_arms": list(not_arms)},
        )
        return [str(row[0]) for row in result.rows]

    async def write_comparison(self, row: dict[str, Any]) -> None:
        await self._ch.insert("shadow_comparisons", tuple(row), [tuple(row.values())])

    async def write_ab(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._ch.insert("ab_results", tuple(rows[0]), [tuple(r.values()) for r in rows])


def categorical_columns(names: npt.NDArray[Any], values: npt.NDArray[Any]) -> dict[str, Any]:
    """Per-row category maps (as two arrays of lists) as one text array per feature."""
    features: dict[str, list[str]] = {}
    rows = len(names)
    for index in range(rows):
        for name, value in zip(names[index], values[index], strict=True):
            features.setdefault(str(name), [""] * rows)[index] = str(value)
    return {name: np.asarray(column, dtype=np.str_) for name, column in features.items()}
