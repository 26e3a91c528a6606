-- The time-keyed tables as native range partitions, for a PostgreSQL without
-- TimescaleDB (0002_time_series.timescaledb.sql is the same tables as
-- hypertables; keep the two column lists identical). Daily partitions are
-- created ahead of time by projections.partitions.ensure_partitions; a
-- DEFAULT partition catches any row outside them, so no row is ever refused.
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.

-- Every event relayed from the event store, as it was: the source replays
-- and rebuilds read from. Immutable (see refuse_archive_change in 0001).
CREATE TABLE {schema}.event_archive (
    log_position       bigint      NOT NULL,
    event_id           uuid        NOT NULL,
    store              text        NOT NULL,
    originator_id      uuid        NOT NULL,
    originator_version integer     NOT NULL,
    event_type         text        NOT NULL,
    symbol             text,
    event_time         timestamptz NOT NULL,
    schema_version     integer     NOT NULL,
    correlation_id     text,
    payload            jsonb       NOT NULL,
    archived_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_time, event_id)
) PARTITION BY RANGE (event_time);
CREATE TABLE {schema}.event_archive_default PARTITION OF {schema}.event_archive DEFAULT;
CREATE INDEX ON {schema}.event_archive (symbol, event_time);
CREATE INDEX ON {schema}.event_archive (event_type, event_time);
CREATE INDEX ON {schema}.event_archive (store, log_position);  -- replay in log order
CREATE TRIGGER event_archive_immutable
    BEFORE UPDATE OR DELETE ON {schema}.event_archive
    FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_archive_change();

-- The decisions read model; fill is set when the order fills.
CREATE TABLE {schema}.decisions (
    decision_id      uuid             NOT NULL,
    symbol           text             NOT NULL,
    decided_at       timestamptz      NOT NULL,
    action           text             NOT NULL CHECK (action IN ('BUY', 'SELL', 'HOLD')),
    quantity         double precision NOT NULL,
    confidence       double precision NOT NULL,
    price            double precision NOT NULL,
    regime_probs     jsonb            NOT NULL,
    strategy_weights jsonb            NOT NULL,
    features         jsonb            NOT NULL,
    model_version    text             NOT NULL,
    risk_passed      boolean          NOT NULL,
    risk_checks      jsonb            NOT NULL,
    correlation_id   text,
    log_position     bigint           NOT NULL,
    fill             jsonb,
    PRIMARY KEY (decided_at, decision_id)
) PARTITION BY RANGE (decided_at);
CREATE TABLE {schema}.decisions_default PARTITION OF {schema}.decisions DEFAULT;
CREATE INDEX ON {schema}.decisions (symbol, decided_at);
CREATE TRIGGER decisions_indexed
    AFTER INSERT ON {schema}.decisions
    FOR EACH ROW EXECUTE FUNCTION {schema}.index_decision();

-- SHAP explanations of decisions, computed off the trading path.
CREATE TABLE {schema}.forensics (
    decision_id        uuid             NOT NULL,
    decided_at         timestamptz      NOT NULL,
    computed_at        timestamptz      NOT NULL DEFAULT now(),
    model_version      text             NOT NULL,
    expected_value     double precision NOT NULL,
    model_output       double precision NOT NULL,
    shap_values        jsonb            NOT NULL,
    top_features       jsonb            NOT NULL,
    regime_reasoning   text,
    strategy_selection text,
    risk_checks        jsonb,
    fill               jsonb,
    PRIMARY KEY (decided_at, decision_id)
) PARTITION BY RANGE (decided_at);
CREATE TABLE {schema}.forensics_default PARTITION OF {schema}.forensics DEFAULT;
