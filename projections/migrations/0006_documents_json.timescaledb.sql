-- TimescaleDB mode keeps the decisions' and forensics' documents as jsonb, as
-- it keeps the archive's (0004): its compressed hypertables refuse ALTER
-- COLUMN ... TYPE, and the projections' json staging columns and parameters
-- are cast to jsonb on the way in (assignment casts). See
-- 0006_documents_json.native.sql for why native mode stores json.
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
COMMENT ON COLUMN {schema}.decisions.features IS
    'jsonb in TimescaleDB mode, like the other documents: its compressed hypertable refuses a change of type';
COMMENT ON COLUMN {schema}.forensics.shap_values IS
    'jsonb in TimescaleDB mode, like the other documents: its compressed hypertable refuses a change of type';
