"""Metric names: those the alerting rules read, and those a /metrics page exposes, for the
checks that every metric an alert (or a dashboard) reads exists where Prometheus scrapes."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
# Series Prometheus makes itself for every target: on no /metrics page.
SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
# Every metric driftloop's rules read: its own (driftloop_), the gRPC server's (grpc_server_),
# the client library's process metrics (process_) and Prometheus's `up`. Recording rules'
# names (driftloop:...) have colons, so they are not taken for scraped metrics.
_METRIC = re.compile(r"\b(?:(?:driftloop|grpc_server|process)_[a-zA-Z0-9_]+|up)\b(?!\s*\()")
_SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_created")  # of histograms, summaries


def prometheus_version() -> str:
    """The Prometheus release the Makefile builds promtool and the server of."""
    pinned = re.search(r"^PROMETHEUS_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert pinned is not None
    return pinned.group(1)


def rule_metrics(path: Path = RULES) -> set[str]:
    """The metric names the rules' expressions read."""
    groups = yaml.safe_load(path.read_text())["groups"]
    expressions = [rule["expr"] for group in groups for rule in group["rules"]]
    # Label matchers' values and label names are not metric names: drop {...} and (...) lists.
    text = "\n".join(re.sub(r"\{[^}]*\}", "", expr) for expr in expressions)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    return set(_METRIC.findall(text))


def exposed(page: str) -> set[str]:
    """Every family and sample name on a /metrics page in the text format, the # HELP and
    # TYPE lines included: a labelled family shows there before its first series."""
    names: set[str] = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind in ("histogram", "summary"):  # its samples are named after it
                names.update(name + suffix for suffix in _SAMPLE_SUFFIXES)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def missing(names: Iterable[str], pages: Iterable[str]) -> list[str]:
    """The names (sorted) that none of the pages exposes, Prometheus's own series aside."""
    found = set().union(*(exposed(page) for page in pages))
    return sorted(set(names) - found - SCRAPE_SERIES)


def scrape(host: str, port: int) -> str:
    """A /metrics page, as Prometheus gets it: a plain HTTP GET."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        page: str = response.read().decode()
    return page
