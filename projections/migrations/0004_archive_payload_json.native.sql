-- The archive keeps each event's payload as the JSON text it arrived as
-- (json), not parsed into jsonb. The archive is written once per event and
-- read back whole (replays, the ledger); nothing queries into it with jsonb
-- operators (-> and ->> work on json too). Parsing into jsonb was the largest
-- cost of an archived row: every number through numeric_in, every object's
-- keys sorted (measured on 1.9 KB decision envelopes: ~54 µs of PostgreSQL
-- CPU per row as jsonb, ~15 µs as json; docs/design.md "Writing in bulk").
-- json still validates the text. Rewrites the table once.
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
ALTER TABLE {schema}.event_archive ALTER COLUMN payload TYPE json USING payload::json;
