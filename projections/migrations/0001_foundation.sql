-- Read models that are not time series, the consumers' tracking rows, and the
-- guard the event archive uses (its tables come in 0002, per storage mode).
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.

-- Where each consumer group stands, written in the same transaction as the
-- rows its batch produced: that is what makes a projection exactly-once.
CREATE TABLE {schema}.projection_tracking (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL CHECK (partition >= 0),
    next_offset    bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- The portfolio read model: one row per symbol, as of log_position.
CREATE TABLE {schema}.positions (
    symbol       text             PRIMARY KEY,
    quantity     double precision NOT NULL DEFAULT 0,
    cash         double precision NOT NULL DEFAULT 0,
    last_price   double precision,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    log_position bigint           NOT NULL
);

-- decision_id -> decided_at. The decisions and forensics tables are keyed by
-- (decided_at, decision_id) because a partitioned table's unique keys must
-- hold its time column; this small table makes a lookup by id one index probe
-- and then a pruned partition probe, and keeps decision ids unique.
CREATE TABLE {schema}.decision_index (
    decision_id uuid        PRIMARY KEY,
    decided_at  timestamptz NOT NULL
);

-- Archived events are facts: refuse to change or delete them. The one
-- exception is partition maintenance moving rows out of the DEFAULT partition
-- into their daily partition (projections.partitions sets the flag for the
-- length of its own transaction).
CREATE FUNCTION {schema}.refuse_archive_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('glassbox.moving_partition_rows', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the event archive is append-only: % on %.% refused',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'archived events never change: record a new event instead';
END
$$;

-- Fills decision_index from every decision row really inserted (an
-- INSERT ... ON CONFLICT DO NOTHING that skips a row does not fire it), so
-- writers cannot forget it, and a second row with a known decision id but
-- another decided_at fails with a unique violation instead of duplicating.
-- (search_path is pinned on the function rather than written into its body,
-- so any schema name is quoted by the server and the plan is cached.)
CREATE FUNCTION {schema}.index_decision() RETURNS trigger
LANGUAGE plpgsql SET search_path = {schema} AS $$
BEGIN
    INSERT INTO decision_index (decision_id, decided_at)
    VALUES (NEW.decision_id, NEW.decided_at);
    RETURN NULL;
END
$$;
