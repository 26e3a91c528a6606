-- TimescaleDB mode keeps the archive's payload as jsonb: a hypertable with
-- compression enabled (0002) refuses ALTER COLUMN ... TYPE, and the staging
-- column's json is cast to jsonb on the way in (an assignment cast). See
-- 0004_archive_payload_json.native.sql for why the native archive is json.
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
COMMENT ON COLUMN {schema}.event_archive.payload IS
    'jsonb in TimescaleDB mode: its compressed hypertable refuses a change of type';
