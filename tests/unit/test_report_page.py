"""The report page builder (driftloop.cli.report_page): every section, empty windows,
unreadable sources, and hostile strings from the services escaped everywhere."""

from __future__ import annotations

import datetime as dt
import math
from html.parser import HTMLParser

from driftloop.cli.charts import Axes, Point, Series, line_chart, nice_step
from driftloop.cli.report_page import NO_DATA, PSI_MAJOR, PSI_MODERATE, SECTIONS, ReportData, render
from driftloop.kit.times import stamp
from driftloop.v1 import drift_pb2, events_pb2, registry_pb2, retrainer_pb2

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
HOSTILE = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"


def at(second: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=second)


class Page(HTMLParser):
    """What a browser would build: the tags, their attributes, the text of each section."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, str] = {}
        self._section: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self._section = dict(attrs)["id"]
            assert self._section is not None
            self.sections[self._section] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section is not None:
            self.sections[self._section] += data

    def count(self, tag: str) -> int:
        return sum(1 for name, _ in self.tags if name == tag)


def full_data(model: str = "churn", feature: str = "tenure", text: str = "") -> ReportData:
    """Two versions, a drifting feature, labels, a canary that promoted, a rolled-back one,
    and two runs (one refused by the gate); `text` goes into every free-text field."""
    history = drift_pb2.ModelHistory(model=model, bucket_s=10)
    for i in range(12):
        version = "1" if i < 8 else "2"
        history.traffic.append(
            drift_pb2.TrafficBucket(
                start=stamp(at(10 * i)), version=version, requests=100, errors=int(i == 3)
            )
        )
        labelled = 0 if i == 11 else 60
        history.quality.append(
            drift_pb2.QualityBucket(
                start=stamp(at(10 * i)),
                version=version,
                answered=100,
                labelled=labelled,
                metric="accuracy",
                value=(0.8 if i < 5 else 0.55 if version == "1" else 0.78)
                if labelled
                else math.nan,
            )
        )
        psi = 0.02 if i < 5 else 0.4
        history.drift.append(
            drift_pb2.DriftPoint(
                start=stamp(at(10 * i)),
                version=version,
                stream=feature,
                psi=psi,
                drifted=psi > 0.25,
            )
        )
        history.drift.append(
            drift_pb2.DriftPoint(
                start=stamp(at(10 * i)), version=version, stream="__output__", psi=psi / 2
            )
        )
    alert = events_pb2.DriftAlert(
        alert_id="a1",
        kind=events_pb2.DRIFT_KIND_CONCEPT,
        model=model,
        version="1",
        severity=events_pb2.SEVERITY_CRITICAL,
        summary=f"accuracy dropped {text}",
        time=stamp(at(55)),
    )
    events = [
        events_pb2.ModelEvent(
            kind=kind, model=model, version=version, reason=f"{why} {text}", time=stamp(at(s))
        )
        for kind, version, why, s in (
            (events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED, "2", "retrained", 70),
            (events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED, "2", "step 2 of 3", 75),
            (events_pb2.MODEL_EVENT_KIND_PROMOTED, "2", "canary passed every step", 80),
            (events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED, "1", "try the old one", 100),
            (events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, "1", "by hand", 105),
        )
    ]
    events.append(events_pb2.ModelEvent(kind=events_pb2.MODEL_EVENT_KIND_PROMOTED, model="other"))
    history.events.extend(events)
    moves = [
        registry_pb2.AliasMove(
            model=model, alias="champion", version="1", actor="demo", time=stamp(at(-3600))
        ),
        registry_pb2.AliasMove(
            model=model,
            alias="champion",
            version="2",
            previous_version="1",
            actor=f"gateway{text}",
            reason="canary passed every step",
            time=stamp(at(80)),
        ),
    ]
    passed = retrainer_pb2.RetrainRun(
        run_id=f"{model}-abc{text}",
        model=model,
        trigger=retrainer_pb2.RETRAIN_TRIGGER_DRIFT,
        state=retrainer_pb2.RUN_STATE_SUCCEEDED,
        parent_version="1",
        new_version="2",
        created=stamp(at(60)),
        training_rows=900,
        holdout_rows=300,
        gate=retrainer_pb2.GateVerdict(
            passed=True,
            checks=[
                retrainer_pb2.GateCheck(
                    name="primary",
                    metric="accuracy",
                    champion=0.55,
                    challenger=0.78,
                    effect=0.23,
                    ci_low=0.18,
                    ci_high=0.28,
                    p_value=1e-9,
                    rows=300,
                )
            ],
        ),
        rollout_outcome="promoted",
        outcome=f"registered v2 {text}",
    )
    refused = retrainer_pb2.RetrainRun(
        run_id=f"{model}-def",
        model=model,
        trigger=retrainer_pb2.RETRAIN_TRIGGER_PERFORMANCE,
        state=retrainer_pb2.RUN_STATE_REJECTED_CHALLENGER,
        parent_version="2",
        created=stamp(at(110)),
        gate=retrainer_pb2.GateVerdict(
            passed=False,
            checks=[retrainer_pb2.GateCheck(name="primary", metric="accuracy", p_value=0.4)],
            reasons=[f"not better by the margin {text}"],
        ),
    )
    old = retrainer_pb2.RetrainRun(run_id="before-the-window", created=stamp(at(-86400)))
    return ReportData(
        model=model,
        start=at(-3600),
        end=at(3600),
        generated=at(3600),
        history=history,
        alerts=[alert],
        champion_moves=moves,
        runs=[old, passed, refused],
    )


def test_every_section_draws_its_data() -> None:
    text = render(full_data())
    page = Page(text)

    assert list(page.sections) == list(SECTIONS)
    assert NO_DATA not in text
    assert page.count("svg") == 1 + 2 + 2, "traffic; tenure and the output; accuracy, coverage"
    assert page.count("script") == 0 and page.count("link") == 0
    policy = next(a["content"] for t, a in page.tags if a.get("http-equiv"))
    assert policy is not None and "default-src 'none'" in policy
    traffic = page.sections["traffic"]
    assert "v1" in traffic and "800" in traffic and "0.12%" in traffic
    drift = page.sections["drift"]
    assert f"{PSI_MODERATE} moderate" in drift and f"{PSI_MAJOR} major" in drift
    assert "model output (prediction drift)" in page.sections["drift"]
    assert "accuracy dropped" in page.sections["drift"]
    rollouts = page.sections["rollouts"]
    for what in ("rollout started", "canary step", "promoted", "rolled back", "champion moved"):
        assert what in rollouts
    assert "other" not in rollouts, "another model's events are not this model's"
    retraining = page.sections["retraining"]
    assert "passed: accuracy 0.550 -> 0.780" in retraining
    assert "refused" in retraining and "not better by the margin" in retraining
    assert "before-the-window" not in retraining
    assert "champion now v2" in text


def test_an_empty_window_says_so_in_every_section() -> None:
    data = ReportData(model="churn", start=at(0), end=at(3600), generated=at(3600))
    page = Page(render(data))

    assert list(page.sections) == list(SECTIONS)
    for key, text in page.sections.items():
        assert NO_DATA in text, key
    assert page.count("svg") == 0


def test_a_source_that_could_not_be_read_is_named_in_its_sections() -> None:
    data = full_data()
    data.history = drift_pb2.ModelHistory()
    data.missing["history"] = "UNAVAILABLE: the drift service is down"
    data.runs = []
    data.missing["runs"] = "UNAVAILABLE: failed to connect"
    page = Page(render(data))

    rollouts = page.sections["rollouts"]
    assert "could not be read: history: UNAVAILABLE: the drift service is down" in rollouts
    assert "champion moved" in rollouts, "the registry's moves still show"
    assert "canary step" not in rollouts
    assert "UNAVAILABLE: failed to connect" in page.sections["retraining"]
    assert NO_DATA in page.sections["retraining"]
    assert "could not be read: history" in page.sections["traffic"]
    assert "failed to connect" not in page.sections["traffic"], "only in its own sections"


def test_hostile_strings_from_the_services_are_escaped_everywhere() -> None:
    data = full_data(model=HOSTILE, feature=HOSTILE, text=HOSTILE)
    data.history.traffic.append(
        drift_pb2.TrafficBucket(start=stamp(at(0)), version=HOSTILE, requests=1)
    )
    data.missing["runs"] = HOSTILE
    text = render(data)
    page = Page(text)

    assert "<script" not in text and "<img" not in text
    assert page.count("script") == 0 and page.count("img") == 0
    assert not [
        (tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")
    ], "no event handler attribute anywhere"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # Escaped, the strings are still there for the reader: as the title, the feature's
    # chart, the alert, the run, the reasons, a version and an error.
    assert text.count("&lt;img src=x onerror=alert(2)&gt;") >= 8
    assert list(page.sections) == list(SECTIONS)


def test_a_chart_breaks_its_line_where_values_are_missing() -> None:
    points = [Point(0, 0.5), Point(10, 0.6), Point(20, math.nan), Point(30, 0.4), Point(40, 0.3)]
    svg = line_chart(
        [Series("v1", "#000", points)], Axes((0, 40), lambda x: f"{x:g}"), label="test"
    )
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4
    single = line_chart([Series("v1", "#000", [Point(5, 1.0)])], Axes((5, 5), str), label="one")
    assert single.count("<polyline") == 0 and single.count("<circle") == 1
    assert [nice_step(span, 4) for span in (1.0, 0.3, 250.0, 0.0)] == [0.5, 0.1, 100.0, 1.0]
