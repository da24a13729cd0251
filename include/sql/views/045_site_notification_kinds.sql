-- The notification ledger's kinds include the sites' two (migration 009): "site_stalled" and
-- "site_recovered". Repeatable, not a migration: the ledger's list of kinds is replaced whole by
-- migrations of other features (011), and migrations apply in number order on a new database but
-- in the order they appear on an upgraded one, so whichever ran last would drop the other's
-- kinds. This adds the sites' kinds to whatever list is there, every time the schema is migrated.
DO $$
DECLARE
    kinds text[];
    wanted constant text[] := ARRAY['site_stalled', 'site_recovered'];
BEGIN
    SELECT array_agg(DISTINCT m[1]) INTO kinds
    FROM pg_constraint c CROSS JOIN LATERAL regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m
    WHERE c.conname = 'notification_log_kind_check' AND c.conrelid = 'notification_log'::regclass;
    IF kinds IS NOT NULL AND NOT wanted <@ kinds THEN
        ALTER TABLE notification_log DROP CONSTRAINT notification_log_kind_check;
        EXECUTE format('ALTER TABLE notification_log ADD CONSTRAINT notification_log_kind_check CHECK (kind = ANY (%L::text[]))',
                       ARRAY(SELECT DISTINCT k FROM unnest(kinds || wanted) k ORDER BY k));
    END IF;
END $$;
