-- The time-keyed tables as TimescaleDB hypertables with daily chunks,
-- compression and retention (0002_time_series.native.sql is the same tables
-- as native range partitions; keep the two column lists identical).
-- Placeholders: {schema} is the quoted schema name, {schema_name} the same
-- name as a string literal; {archive_retention}, {read_model_retention},
-- {compress_after} and {chunk_interval} are interval literals from
-- projections.migrate.MigrationSettings. Write {{ and }} for braces.

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
);
SELECT create_hypertable(format('%I.event_archive', {schema_name})::regclass, 'event_time',
                         chunk_time_interval => {chunk_interval},
                         create_default_indexes => false);  -- the primary key leads with time
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
);
SELECT create_hypertable(format('%I.decisions', {schema_name})::regclass, 'decided_at',
                         chunk_time_interval => {chunk_interval},
                         create_default_indexes => false);  -- the primary key leads with time
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
);
SELECT create_hypertable(format('%I.forensics', {schema_name})::regclass, 'decided_at',
                         chunk_time_interval => {chunk_interval},
                         create_default_indexes => false);  -- the primary key leads with time

-- Compression and retention run as TimescaleDB background jobs. The trigger
-- above is created before compression is enabled on purpose.
ALTER TABLE {schema}.event_archive SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol',
    timescaledb.compress_orderby = 'event_time DESC'
);
SELECT add_compression_policy(format('%I.event_archive', {schema_name})::regclass, {compress_after});
SELECT add_retention_policy(format('%I.event_archive', {schema_name})::regclass, {archive_retention});

ALTER TABLE {schema}.decisions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol',
    timescaledb.compress_orderby = 'decided_at DESC'
);
SELECT add_compression_policy(format('%I.decisions', {schema_name})::regclass, {compress_after});
SELECT add_retention_policy(format('%I.decisions', {schema_name})::regclass, {read_model_retention});

ALTER TABLE {schema}.forensics SET (
    timescaledb.compress,
    timescaledb.compress_orderby = 'decided_at DESC'
);
SELECT add_compression_policy(format('%I.forensics', {schema_name})::regclass, {compress_after});
SELECT add_retention_policy(format('%I.forensics', {schema_name})::regclass, {read_model_retention});
