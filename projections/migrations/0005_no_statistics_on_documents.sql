-- No planner statistics for the JSON document columns: nothing filters,
-- joins or groups on them (the API and the ledger select them whole), yet
-- autovacuum's ANALYZE of every growing partition sorted their sampled values
-- with jsonb_cmp: measured under perf.pipeline at 1,000 decisions/s, ANALYZE
-- was ~29 % of PostgreSQL's CPU, most of it comparing jsonb documents. With a
-- statistics target of 0 ANALYZE skips the column; the keys and times the
-- queries filter on keep theirs. New native partitions copy the targets from
-- their parent (projections.partitions). Both storage modes.
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
ALTER TABLE {schema}.decisions
    ALTER COLUMN regime_probs SET STATISTICS 0,
    ALTER COLUMN strategy_weights SET STATISTICS 0,
    ALTER COLUMN features SET STATISTICS 0,
    ALTER COLUMN risk_checks SET STATISTICS 0,
    ALTER COLUMN fill SET STATISTICS 0;
ALTER TABLE {schema}.forensics
    ALTER COLUMN shap_values SET STATISTICS 0,
    ALTER COLUMN top_features SET STATISTICS 0,
    ALTER COLUMN risk_checks SET STATISTICS 0,
    ALTER COLUMN fill SET STATISTICS 0;
ALTER TABLE {schema}.event_archive ALTER COLUMN payload SET STATISTICS 0;
