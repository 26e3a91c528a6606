-- The decisions' and the forensics' JSON documents as the JSON text they
-- arrive as (json), not parsed into jsonb, as 0004 did for the archive.
-- Nothing filters, joins or groups on them (the API, the ledger and the
-- checksums select them whole; -> and ->> work on json too), but parsing into
-- jsonb took every number through numeric_in and sorted every object's keys:
-- measured with the staging write of 12,000 decision rows (regime
-- probabilities, weights, 20 features, 3 risk checks), 37-40 µs of
-- PostgreSQL CPU per row as jsonb, 19-26 µs as json. A document now keeps the
-- key order its projection wrote. Rewrites both tables once; 0005's
-- statistics targets survive the change of type (tests/projections/test_migrate.py).
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
ALTER TABLE {schema}.decisions
    ALTER COLUMN regime_probs TYPE json USING regime_probs::json,
    ALTER COLUMN strategy_weights TYPE json USING strategy_weights::json,
    ALTER COLUMN features TYPE json USING features::json,
    ALTER COLUMN risk_checks TYPE json USING risk_checks::json,
    ALTER COLUMN fill TYPE json USING fill::json;
ALTER TABLE {schema}.forensics
    ALTER COLUMN shap_values TYPE json USING shap_values::json,
    ALTER COLUMN top_features TYPE json USING top_features::json,
    ALTER COLUMN risk_checks TYPE json USING risk_checks::json,
    ALTER COLUMN fill TYPE json USING fill::json;
