-- The driftloop ClickHouse schema: idempotent DDL, applied at every start-up.
-- deploy/clickhouse/schema.sql links here. Statements end with ';' at the end of a line.
-- The database name `driftloop` is replaced by the configured one; on a cluster the
-- MergeTree engines become Replicated*MergeTree and statements run ON CLUSTER.
--
-- Re-delivered rows must not double-count: every table is a ReplacingMergeTree whose
-- ORDER BY is the row's natural key, and every read that counts uses FINAL.

CREATE DATABASE IF NOT EXISTS driftloop;

-- Every served (live) or shadow prediction, one row per (model, version, role, request).
CREATE TABLE IF NOT EXISTS driftloop.predictions
(
    request_id String,
    time DateTime64(6, 'UTC'),
    model LowCardinality(String),
    version LowCardinality(String),
    role Enum8('unspecified' = 0, 'live' = 1, 'shadow' = 2),
    variant LowCardinality(String),
    entity_key String,
    numbers Map(LowCardinality(String), Float64),
    categories Map(LowCardinality(String), String),
    output_kind Enum8('unspecified' = 0, 'binary' = 1, 'multiclass' = 2, 'regression' = 3),
    output_value Float64,
    output_label String,
    output_probabilities Map(LowCardinality(String), Float64),
    latency_us UInt32,
    error LowCardinality(String),
    ingested DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (model, version, role, time, request_id);

-- Ground truth, one row per request; a later label for the same request replaces it.
CREATE TABLE IF NOT EXISTS driftloop.labels
(
    request_id String,
    time DateTime64(6, 'UTC'),
    truth_kind Enum8('label' = 1, 'value' = 2),
    label String,
    value Float64,
    source LowCardinality(String),
    ingested DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(time)
ORDER BY request_id;

-- Predictions that were answered and have their label: performance windows and training
-- data read this (a failed call, logged with its error, has no answer to judge).
CREATE OR REPLACE VIEW driftloop.predictions_labelled AS
SELECT
    p.request_id AS request_id,
    p.time AS time,
    p.model AS model,
    p.version AS version,
    p.role AS role,
    p.variant AS variant,
    p.entity_key AS entity_key,
    p.numbers AS numbers,
    p.categories AS categories,
    p.output_kind AS output_kind,
    p.output_value AS output_value,
    p.output_label AS output_label,
    p.output_probabilities AS output_probabilities,
    l.truth_kind AS truth_kind,
    l.label AS truth_label,
    l.value AS truth_value,
    l.time AS label_time,
    l.source AS label_source
FROM driftloop.predictions AS p FINAL
INNER JOIN driftloop.labels AS l FINAL ON p.request_id = l.request_id
WHERE p.error = '';

-- Model versions: one row per (model, version); `record` is the full ModelVersion the
-- registry serves (base64 protobuf), the other columns are for SQL and Grafana.
CREATE TABLE IF NOT EXISTS driftloop.model_versions
(
    model LowCardinality(String),
    version UInt32,
    created DateTime64(6, 'UTC'),
    created_by String,
    flavor LowCardinality(String),
    artifact_sha256 String,
    parent_version String,
    code_version String,
    data_sha256 String,
    data_rows UInt64,
    seed Int64,
    metrics Map(LowCardinality(String), Float64),
    tags Map(String, String),
    record String
)
ENGINE = ReplacingMergeTree
ORDER BY (model, version);

-- Every alias move, append-only: who pointed which alias of which model where, when, why.
-- "Which version was champion at time T" is the last move at or before T.
CREATE TABLE IF NOT EXISTS driftloop.alias_history
(
    model LowCardinality(String),
    alias LowCardinality(String),
    version String,
    previous_version String,
    actor String,
    reason String,
    time DateTime64(6, 'UTC'),
    seq UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (model, alias, seq);

-- Every model event of the topic model-events, kept after the topic's retention forgets it:
-- the rollout history (rollouts started, canary steps, promotions, rollbacks), alias moves,
-- registrations and halted retraining runs. Written by the drift service. `kind` is the
-- proto's ModelEventKind without its prefix, in lower case ('rollout_stepped'); `event_id`
-- is the SHA-256 of the event's deterministic encoding (the webhook ledger's event_id), so
-- a re-delivered record, or the same event published twice, is one row. `time` is the
-- event's own, or when it was published if it had none.
CREATE TABLE IF NOT EXISTS driftloop.model_events
(
    event_id String,
    time DateTime64(6, 'UTC'),
    kind LowCardinality(String),
    model LowCardinality(String),
    version String,
    previous_version String,
    alias LowCardinality(String),
    reason String,
    actor String,
    run_id String,
    run_state LowCardinality(String),
    ingested DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, event_id);

-- The data a version was trained on, by content hash.
CREATE TABLE IF NOT EXISTS driftloop.data_snapshots
(
    content_sha256 String,
    source String,
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    row_count UInt64,
    first_seen DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(first_seen)
ORDER BY content_sha256;

-- Drift statistics over time, one row per (model, version, window, stream, test): the
-- windowed reports and the online detectors write here, Grafana plots it. `stream` is a
-- feature name, `__output__` (prediction drift), `__error__` (the labelled error stream)
-- or `__dataset__` (the share of drifted features). Recomputing a window replaces its rows.
CREATE TABLE IF NOT EXISTS driftloop.drift_metrics
(
    model LowCardinality(String),
    version LowCardinality(String),
    window_kind Enum8('last_n' = 1, 'time' = 2, 'online' = 3),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    stream LowCardinality(String),
    test LowCardinality(String),
    value Float64,
    p_value Float64,
    drifted UInt8,
    rows UInt64,
    computed DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed)
PARTITION BY toYYYYMM(window_end)
ORDER BY (model, version, window_kind, window_end, stream, test);

-- Every event of every drift alert (also published to the drift-alerts topic): its open
-- (revision 0), each update (a stream joined, or the severity rose) and its close share
-- the alert_id; `time` is the event's. `record` is the DriftAlert protobuf (base64);
-- ListAlerts serves each alert's latest revision. `first_alarms` pairs with `features`.
CREATE TABLE IF NOT EXISTS driftloop.drift_alerts
(
    alert_id String,
    time DateTime64(6, 'UTC'),
    model LowCardinality(String),
    version LowCardinality(String),
    kind Enum8('unspecified' = 0, 'data' = 1, 'prediction' = 2, 'concept' = 3),
    severity Enum8('unspecified' = 0, 'info' = 1, 'warning' = 2, 'critical' = 3),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    window_rows UInt64,
    features Array(String),
    scores Array(Float64),
    summary String,
    record String,
    state Enum8('open' = 1, 'updated' = 2, 'closed' = 3) DEFAULT 'open',
    revision UInt32 DEFAULT 0,
    opened DateTime64(6, 'UTC') DEFAULT time,
    first_alarms Array(DateTime64(6, 'UTC')) DEFAULT []
)
ENGINE = ReplacingMergeTree
ORDER BY (model, time, alert_id);

-- A drift_alerts table made before alerts had a life gets the new columns (its rows read
-- as opened alerts, revision 0).
ALTER TABLE driftloop.drift_alerts
    ADD COLUMN IF NOT EXISTS state Enum8('open' = 1, 'updated' = 2, 'closed' = 3) DEFAULT 'open',
    ADD COLUMN IF NOT EXISTS revision UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS opened DateTime64(6, 'UTC') DEFAULT time,
    ADD COLUMN IF NOT EXISTS first_alarms Array(DateTime64(6, 'UTC')) DEFAULT [];

-- The delivery ledger of alerts to webhooks: one row per event and webhook once it has
-- its outcome, delivered (the receiver answered 2xx) or dead_lettered (it never did, and
-- the record went to dead-letter). The drift service reads it before sending, so a
-- re-delivered record is not sent twice, across restarts too.
CREATE TABLE IF NOT EXISTS driftloop.webhook_deliveries
(
    webhook LowCardinality(String),
    event_id String,
    delivery_id String,
    kind LowCardinality(String),
    model LowCardinality(String),
    outcome Enum8('delivered' = 1, 'dead_lettered' = 2),
    attempts UInt16,
    status UInt16,
    error String,
    event_time DateTime64(6, 'UTC'),
    finished DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(finished)
ORDER BY (webhook, event_id);

-- The root-cause view: per model version and evaluated window, each feature's drift (PSI),
-- its link to the performance drop (when labels existed) and its rank: by link when the
-- window showed concept drift, else by PSI. Grafana reads the newest window from here.
CREATE OR REPLACE VIEW driftloop.drift_root_causes AS
SELECT
    model,
    version,
    window_kind,
    window_end,
    stream AS feature,
    maxIf(value, test = 'psi') AS psi,
    maxIf(drifted, test = 'psi') AS feature_drifted,
    if(countIf(test = 'link') > 0, anyIf(value, test = 'link'), nan) AS performance_link,
    maxIf(drifted, test = 'link') AS performance_dropped,
    row_number() OVER (
        PARTITION BY model, version, window_kind, window_end
        ORDER BY if(performance_dropped = 1, performance_link, psi) DESC, feature
    ) AS rank
FROM driftloop.drift_metrics FINAL
WHERE NOT startsWith(stream, '__')
GROUP BY model, version, window_kind, window_end, stream;

-- Training policies of the retrainer, one row per (model, revision); the newest revision
-- is in force. `record` is the TrainingPolicy protobuf (base64).
CREATE TABLE IF NOT EXISTS driftloop.retrain_policies
(
    model LowCardinality(String),
    revision UInt64,
    updated DateTime64(6, 'UTC'),
    updated_by String,
    enabled UInt8,
    record String
)
ENGINE = ReplacingMergeTree
ORDER BY (model, revision);

-- Every trigger the retrainer considered: whether it started a run and why, or why not
-- (cooldown, a run in progress, too few labels, policy off). A re-delivered drift alert
-- has the same decision_id, so it is recorded once.
CREATE TABLE IF NOT EXISTS driftloop.retrain_decisions
(
    decision_id String,
    time DateTime64(6, 'UTC'),
    model LowCardinality(String),
    trigger LowCardinality(String),
    triggered UInt8,
    reason String,
    evidence String,
    run_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (model, decision_id);

-- Retraining runs, one row per run (the newest `updated` wins): state, lineage, the
-- snapshot, the gate's verdict and the rollout's outcome. `record` is the RetrainRun
-- protobuf (base64, without its steps).
CREATE TABLE IF NOT EXISTS driftloop.retrain_runs
(
    run_id String,
    model LowCardinality(String),
    trigger LowCardinality(String),
    state LowCardinality(String),
    created DateTime64(6, 'UTC'),
    updated DateTime64(6, 'UTC'),
    parent_version String,
    new_version String,
    snapshot_id String,
    window_end DateTime64(6, 'UTC'),
    training_rows UInt64,
    holdout_rows UInt64,
    gate_passed UInt8,
    rollout_outcome String,
    reason String,
    outcome String,
    record String
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (model, run_id);

-- The steps of every run (extract, validate, train, evaluate, gate, register, rollout),
-- one row per (run, step); `finished` is the epoch while a step runs. Inputs and outputs
-- are JSON objects.
CREATE TABLE IF NOT EXISTS driftloop.retrain_steps
(
    run_id String,
    model LowCardinality(String),
    ordinal UInt8,
    step LowCardinality(String),
    state LowCardinality(String),
    started DateTime64(6, 'UTC'),
    finished DateTime64(6, 'UTC'),
    detail String,
    inputs String,
    outputs String,
    updated DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (model, run_id, ordinal);

-- Shadow versions against live on the same requests, one row per (model, shadow version,
-- window), written by the shadow service every few minutes; Grafana plots agreement and
-- the labelled comparison from here.
CREATE TABLE IF NOT EXISTS driftloop.shadow_comparisons
(
    model LowCardinality(String),
    shadow_version LowCardinality(String),
    live_version String,
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    compared UInt64,
    agreement Float64,
    agreement_low Float64,
    agreement_high Float64,
    mean_abs_diff Float64,
    live_p99_latency_ms Float64,
    shadow_p99_latency_ms Float64,
    live_error_rate Float64,
    shadow_error_rate Float64,
    labelled UInt64,
    metric LowCardinality(String),
    live_metric Float64,
    shadow_metric Float64,
    effect Float64,
    effect_low Float64,
    effect_high Float64,
    p_value Float64,
    verdict LowCardinality(String),
    skipped_share Float64,
    computed DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed)
ORDER BY (model, shadow_version, window_end);

-- A/B results per variant against the control, one row per (model, window, variant),
-- written by the shadow service for models whose live traffic has several variants.
CREATE TABLE IF NOT EXISTS driftloop.ab_results
(
    model LowCardinality(String),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    variant LowCardinality(String),
    control LowCardinality(String),
    version String,
    requests UInt64,
    units UInt64,
    error_rate Float64,
    p99_latency_ms Float64,
    labelled UInt64,
    metric LowCardinality(String),
    value Float64,
    value_low Float64,
    value_high Float64,
    difference Float64,
    difference_low Float64,
    difference_high Float64,
    p_value Float64,
    always_valid_p Float64,
    required_labelled UInt64,
    decision LowCardinality(String),
    computed DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed)
ORDER BY (model, window_end, variant);
