-- Dashboard rollups, second step (issue 15 item 5; docs/performance.md "Run 15"). A dashboard miss
-- spent most of its time decoding the ~500 court-day rows 0004's statement sent for the domain to
-- sum. Now the statement groups in SQL and sends ~150 rows, and one more per-day table gives the
-- club's totals per day and status without summing its courts:
--
-- | table                      | key                           | (0004 keeps the others) |
-- |----------------------------|-------------------------------|-------------------------|
-- | dashboard_day_club_totals  | club, date, status            | count, cents, minutes   |
--
-- Every rollup a booking writes stays keyed by its day (and court, hour or player), never by a
-- whole week, month or year: a row per period would be shared by every booking of the club in
-- that period, so concurrent bookings would queue on it, and two transactions booking two days
-- in opposite orders would deadlock (tried, and refused for that reason).
--
-- The trigger functions become static SQL, planned once per connection; 0004's one function ran
-- every upsert through EXECUTE and planned it on every call (pgbench, one booking INSERT:
-- 1.33-1.42 ms with 0004, see docs/performance.md for this migration's figure).

-- Holds every writer off until this migration commits: no change can fall between the backfill
-- and the first run of the new statements.
LOCK TABLE reservations IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE dashboard_day_club_totals (
    club_id       BIGINT NOT NULL,
    date          DATE NOT NULL,
    status        TEXT NOT NULL,
    reservations  BIGINT NOT NULL,
    cents         BIGINT NOT NULL,
    minutes       BIGINT NOT NULL,
    PRIMARY KEY (club_id, date, status) INCLUDE (reservations, cents, minutes)
);

-- Covering indexes: the dashboard reads each rollup by club and date range with an index-only
-- scan, no heap visit (pgbench, a club-month: 0.78-0.87 ms a statement without them, 0.49-0.53
-- with them once vacuumed; the pages bookings touch are read from the heap until autovacuum).
CREATE INDEX dashboard_day_totals_read_idx ON dashboard_day_totals (club_id, date)
    INCLUDE (court_id, status, reservations, cents, minutes);
CREATE INDEX dashboard_hour_starts_read_idx ON dashboard_hour_starts (club_id, date)
    INCLUDE (hour, reservations);
CREATE INDEX dashboard_period_players_read_idx ON dashboard_period_players (club_id, period, period_start)
    INCLUDE (reservations);

-- The backfill, from 0004's per-court day rows (already exact sums), in key order.
INSERT INTO dashboard_day_club_totals (club_id, date, status, reservations, cents, minutes)
SELECT club_id, date, status, SUM(reservations), SUM(cents), SUM(minutes)
FROM dashboard_day_totals
GROUP BY club_id, date, status
ORDER BY club_id, date, status;

-- The upserts that apply changed reservation rows to the rollups, the one source of the trigger
-- functions below. Tables in this order, keys in key order, so that two statements never take
-- the same rows' locks in opposite orders. Each statement sums its rows per key first: a COPY of
-- millions of rows is one grouped upsert per table.
CREATE OR REPLACE FUNCTION bff_dashboard_rollup_statements(changes TEXT) RETURNS SETOF TEXT LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_day_totals AS t (club_id, date, court_id, status, reservations, cents, minutes)
        SELECT club_id, date, court_id, status, SUM(sign),
               SUM(sign * CAST(ROUND(price * 100) AS BIGINT)),
               SUM(sign * CAST(EXTRACT(EPOCH FROM (end_time - start_time)) / 60 AS BIGINT))
        FROM c GROUP BY club_id, date, court_id, status
        ORDER BY club_id, date, court_id, status
        ON CONFLICT (club_id, date, court_id, status) DO UPDATE SET
            reservations = t.reservations + EXCLUDED.reservations,
            cents = t.cents + EXCLUDED.cents,
            minutes = t.minutes + EXCLUDED.minutes
    $sql$, changes);
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_day_club_totals AS t (club_id, date, status, reservations, cents, minutes)
        SELECT club_id, date, status, SUM(sign),
               SUM(sign * CAST(ROUND(price * 100) AS BIGINT)),
               SUM(sign * CAST(EXTRACT(EPOCH FROM (end_time - start_time)) / 60 AS BIGINT))
        FROM c GROUP BY club_id, date, status
        ORDER BY club_id, date, status
        ON CONFLICT (club_id, date, status) DO UPDATE SET
            reservations = t.reservations + EXCLUDED.reservations,
            cents = t.cents + EXCLUDED.cents,
            minutes = t.minutes + EXCLUDED.minutes
    $sql$, changes);
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_hour_starts AS t (club_id, date, hour, reservations)
        SELECT club_id, date, CAST(EXTRACT(HOUR FROM start_time) AS SMALLINT) AS start_hour, SUM(sign)
        FROM c WHERE status <> 'cancelled' GROUP BY club_id, date, start_hour
        ORDER BY club_id, date, start_hour
        ON CONFLICT (club_id, date, hour) DO UPDATE SET reservations = t.reservations + EXCLUDED.reservations
    $sql$, changes);
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_period_players AS t (club_id, period, period_start, user_id, reservations)
        SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day, created_by_id, SUM(sign)
        FROM c CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
        WHERE status <> 'cancelled' GROUP BY club_id, kinds.kind, start_day, created_by_id
        ORDER BY club_id, kinds.kind, start_day, created_by_id
        ON CONFLICT (club_id, period, period_start, user_id) DO UPDATE SET reservations = t.reservations + EXCLUDED.reservations
    $sql$, changes);
END $$;

-- One trigger function per statement kind, its body the upserts above over that kind's transition
-- tables (they exist only for the kind that declares them, and only in the trigger function
-- itself), written out here so that they are static SQL. Run this block again after changing
-- `bff_dashboard_rollup_statements`.
DO $do$
DECLARE
    kind TEXT;
    changes TEXT;
    body TEXT;
BEGIN
    FOR kind, changes IN VALUES
        ('insert', 'SELECT *, 1 AS sign FROM new_rows'),
        ('delete', 'SELECT *, -1 AS sign FROM old_rows'),
        ('update', 'SELECT *, 1 AS sign FROM new_rows UNION ALL SELECT *, -1 AS sign FROM old_rows')
    LOOP
        SELECT string_agg(upsert, E';\n') INTO body FROM bff_dashboard_rollup_statements(changes) AS upsert;
        EXECUTE format(
            'CREATE FUNCTION bff_dashboard_rollups_%s() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN %s; RETURN NULL; END $f$',
            kind, body);
    END LOOP;
END $do$;

DROP TRIGGER reservations_rollup_insert ON reservations;
DROP TRIGGER reservations_rollup_update ON reservations;
DROP TRIGGER reservations_rollup_delete ON reservations;
DROP FUNCTION bff_dashboard_rollups();
CREATE TRIGGER reservations_rollup_insert AFTER INSERT ON reservations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups_insert();
CREATE TRIGGER reservations_rollup_update AFTER UPDATE ON reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups_update();
CREATE TRIGGER reservations_rollup_delete AFTER DELETE ON reservations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups_delete();

CREATE OR REPLACE FUNCTION bff_dashboard_rollups_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE dashboard_day_totals, dashboard_day_club_totals, dashboard_hour_starts, dashboard_period_players;
    RETURN NULL;
END $$;
