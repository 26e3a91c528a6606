-- Every record a projection worker dead-lettered, written in the same
-- transaction as the tracking rows of the batch it came in, so a record is
-- dead-lettered exactly once whatever crashes (the key makes a redone batch
-- write nothing new). The row is also the outbox of the group's dead-letter
-- topic dlq.<group>: published_at, dlq_partition and dlq_offset are set once
-- the broker acknowledged it there (see projections.dead_letters).
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
CREATE TABLE {schema}.dead_letters (
    consumer_group   text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL CHECK (partition >= 0),
    source_offset    bigint      NOT NULL CHECK (source_offset >= 0),
    pack_index       integer     NOT NULL CHECK (pack_index >= -1),  -- -1: the whole record
    source           text        NOT NULL,  -- topic/partition/offset[#index], the DLQ record's source header
    reason           text        NOT NULL,
    error            text        NOT NULL,
    record_key       bytea,
    record_value     bytea,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    dlq_partition    integer,
    dlq_offset       bigint,
    PRIMARY KEY (consumer_group, topic, partition, source_offset, pack_index)
);
CREATE INDEX dead_letters_unpublished ON {schema}.dead_letters (consumer_group) WHERE published_at IS NULL;
CREATE INDEX dead_letters_by_reason ON {schema}.dead_letters (consumer_group, reason);
