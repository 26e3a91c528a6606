-- A dead letter re-driven into its projection (`glassbox dlq replay`): replayed_at is set in the
-- same transaction as the rows the replay wrote, so a replay happens once; a replay that fails
-- again leaves the letter in place with the new reason and error, and counts the attempt.
-- Placeholders: {schema} is the quoted schema name; write {{ and }} for braces.
ALTER TABLE {schema}.dead_letters
    ADD COLUMN replayed_at     timestamptz,
    ADD COLUMN replay_attempts integer NOT NULL DEFAULT 0;
