"""Shadow comparisons and A/B reports from the prediction log, on demand and periodically.

The statistics are pure (comparison.py, experiments.py); this reads their inputs from
ClickHouse (store.py) and keeps the periodic round: every `every_s`, each shadow version
that answered in the last window is compared with live, and each model whose live traffic
has several A/B variants gets a report; both are stored for Grafana.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.kit.errors import DriftloopError
from driftloop.shadow import metrics
from driftloop.shadow.comparison import Comparison, PairedColumns, compare
from driftloop.shadow.experiments import ABReport, VariantColumns, ab_report
from driftloop.shadow.mirror import MirrorState
from driftloop.shadow.store import ShadowStore, categorical_columns

log = logging.getLogger(__name__)

# Variants the gateway gives that are not arms of an A/B test: the stable version's
# default (and its fallback), a canary's candidate.
NOT_ARMS = ("stable", "canary")
DEFAULT_WINDOW = dt.timedelta(hours=1)
DEFAULT_MIN_EFFECT = 0.02


@dataclass(frozen=True)
class ShadowResult:
    model: str
    shadow_version: str
    live_versions: list[str]
    start: dt.datetime
    end: dt.datetime
    comparison: Comparison


@dataclass(frozen=True)
class ABResult:
    model: str
    start: dt.datetime
    end: dt.datetime
    versions: dict[str, list[str]]  # variant -> versions it served
    report: ABReport


def _kind(columns: dict[str, Any]) -> str:
    kinds = [str(k) for k in columns["kind"]] if len(columns["kind"]) else []
    known = [k for k in kinds if k in ("binary", "multiclass", "regression")]
    return known[0] if known else "binary"


class Reports:
    def __init__(self, store: ShadowStore, state: MirrorState) -> None:
        self._store = store
        self._state = state

    async def shadow(
        self, model: str, version: str, start: dt.datetime, end: dt.datetime
    ) -> ShadowResult:
        columns = await self._store.paired(model, version, start, end)
        kind = _kind(columns)
        if len(columns["request_id"]) == 0:
            pairs = PairedColumns.empty(kind)
            categorical: dict[str, Any] = {}
        else:
            pairs = PairedColumns(
                kind=kind,
                live_value=columns["live_value"],
                shadow_value=columns["shadow_value"],
                live_label=columns["live_label"],
                shadow_label=columns["shadow_label"],
                live_latency_ms=columns["live_latency_ms"],
                shadow_latency_ms=columns["shadow_latency_ms"],
                live_error=columns["live_error"],
                shadow_error=columns["shadow_error"],
                truth_label=columns["truth_label"],
                truth_value=columns["truth_value"],
                labelled=columns["labelled"],
            )
            categorical = categorical_columns(columns["category_names"], columns["category_values"])
        comparison = await asyncio.to_thread(compare, pairs, categorical)
        live = sorted({str(v) for v in columns["live_version"]})
        return ShadowResult(model, version, live, start, end, comparison)

    async def ab(
        self,
        model: str,
        start: dt.datetime,
        end: dt.datetime,
        min_effect: float,
        control: str = "",
    ) -> ABResult:
        columns = await self._store.variants(model, start, end)
        variants = np.asarray(columns["variant"]).astype(str)
        arms = sorted(set(variants.tolist()) - set(NOT_ARMS))
        keep = np.isin(variants, arms) if arms else np.ones(len(variants), dtype=bool)
        picked = {name: np.asarray(values)[keep] for name, values in columns.items()}
        kind = _kind(picked)
        truth_label = picked["truth_label"].astype(str)
        output_label = picked["output_label"].astype(str)
        abs_error = np.abs(
            picked["output_value"].astype(np.float64) - picked["truth_value"].astype(np.float64)
        )
        rows = VariantColumns(
            kind=kind,
            variant=picked["variant"],
            request_id=picked["request_id"],
            entity_key=picked["entity_key"],
            error=picked["error"].astype(str) != "",
            latency_ms=picked["latency_ms"],
            output_value=picked["output_value"],
            output_label=output_label,
            labelled=picked["labelled"].astype(bool),
            correct=output_label == truth_label,
            abs_error=abs_error,
        )
        report = await asyncio.to_thread(ab_report, rows, min_effect, control=control or None)
        versions: dict[str, list[str]] = {}
        for variant, version in zip(
            picked["variant"].astype(str), picked["version"].astype(str), strict=True
        ):
            versions.setdefault(variant, [])
            if version not in versions[variant]:
                versions[variant].append(version)
        return ABResult(model, start, end, versions, report)

    async def run(self, every_s: float, window_s: float) -> None:
        """The periodic round (stops when cancelled)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.round(dt.timedelta(seconds=window_s))
            except Exception:  # a failed round is retried at the next, never fatal
                log.exception("the periodic shadow comparison failed; retrying next round")

    async def round(self, window: dt.timedelta) -> int:
        """Compare every shadow version with recent traffic; store the results."""
        end = dt.datetime.now(dt.UTC)
        start = end - window
        stored = 0
        for model, version in await self._store.shadow_versions(start):
            try:
                result = await self.shadow(model, version, start, end)
            except DriftloopError as error:
                log.warning("comparing %s v%s failed: %s", model, version, error.message)
                continue
            await self._store.write_comparison(self.comparison_row(result))
            metrics.AGREEMENT.labels(model, version).set(result.comparison.agreement)
            stored += 1
        for model in await self._store.experiments(start, NOT_ARMS):
            ab = await self.ab(model, start, end, DEFAULT_MIN_EFFECT)
            await self._store.write_ab(self.ab_rows(ab))
            stored += 1
        return stored

    def ab_rows(self, result: ABResult) -> list[dict[str, Any]]:
        report = result.report
        against = {c.variant: c for c in report.comparisons}
        now = dt.datetime.now(dt.UTC)
        rows = []
        for variant in report.variants:
            c = against.get(variant.variant)
            nan = float("nan")
            rows.append(
                {
                    "model": result.model,
                    "window_start": result.start,
                    "window_end": result.end,
                    "variant": variant.variant,
                    "control": report.control,
                    "version": ",".join(result.versions.get(variant.variant, [])),
                    "requests": variant.requests,
                    "units": variant.units,
                    "error_rate": variant.error_rate,
                    "p99_latency_ms": variant.latency_p99_ms,
                    "labelled": variant.labelled,
                    "metric": report.metric,
                    "value": variant.quality,
                    "value_low": variant.quality_ci[0],
                    "value_high": variant.quality_ci[1],
                    "difference": c.difference if c else nan,
                    "difference_low": c.ci[0] if c else nan,
                    "difference_high": c.ci[1] if c else nan,
                    "p_value": c.p_value if c else nan,
                    "always_valid_p": c.sequential_p_value if c else nan,
                    "required_labelled": (c.required_per_variant or 0) if c else 0,
                    "decision": c.decision if c else "control",
                    "computed": now,
                }
            )
        return rows

    def comparison_row(self, result: ShadowResult) -> dict[str, Any]:
        c = result.comparison
        return {
            "model": result.model,
            "shadow_version": result.shadow_version,
            "live_version": ",".join(result.live_versions),
            "window_start": result.start,
            "window_end": result.end,
            "compared": c.compared,
            "agreement": c.agreement,
            "agreement_low": c.agreement_ci[0],
            "agreement_high": c.agreement_ci[1],
            "mean_abs_diff": c.diff_mean_abs,
            "live_p99_latency_ms": c.live_p99_ms,
            "shadow_p99_latency_ms": c.shadow_p99_ms,
            "live_error_rate": c.live_error_rate,
            "shadow_error_rate": c.shadow_error_rate,
            "labelled": c.labelled,
            "metric": c.metric,
            "live_metric": c.live_quality,
            "shadow_metric": c.shadow_quality,
            "effect": c.effect,
            "effect_low": c.effect_ci[0],
            "effect_high": c.effect_ci[1],
            "p_value": c.p_value,
            "verdict": c.verdict,
            "skipped_share": self._state.skipped_share,
            "computed": dt.datetime.now(dt.UTC),
        }
