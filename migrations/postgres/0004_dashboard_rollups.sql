-- Dashboard rollups: sums of reservations per day (and players per period), so that a dashboard
-- reads a few hundred summed rows instead of grouping every reservation of two periods five ways
-- (a club-month on the large seed: ~1 ms against ~7 ms of Postgres time; docs/performance.md).
--
-- Kept by statement-level triggers in the transaction of the change itself: the gateway's own
-- bookings and cancellations, SQL by hand, COPY and bulk loads all count, and a rolled-back change
-- leaves no trace. A statement's rows are summed per key before they touch a rollup, so a COPY of
-- millions of rows costs one grouped upsert per table, not a trigger per row. Counts that fall back
-- to 0 (a cancelled booking's old status) keep their row; readers ignore them.
--
-- Embedded SQLite has no rollups: its data sets are small and its dashboard scans reservations.

-- Count, revenue base and minutes per club, date, court and status (all statuses).
CREATE TABLE dashboard_day_totals (
    club_id       BIGINT NOT NULL,
    date          DATE NOT NULL,
    court_id      BIGINT NOT NULL,
    status        TEXT NOT NULL,
    reservations  BIGINT NOT NULL,
    cents         BIGINT NOT NULL,
    minutes       BIGINT NOT NULL,
    PRIMARY KEY (club_id, date, court_id, status)
);

-- Non-cancelled reservations per club, date and start hour (peak hours).
CREATE TABLE dashboard_hour_starts (
    club_id       BIGINT NOT NULL,
    date          DATE NOT NULL,
    hour          SMALLINT NOT NULL,
    reservations  BIGINT NOT NULL,
    PRIMARY KEY (club_id, date, hour)
);

-- Non-cancelled reservations per club, period and creator, for each period kind a dashboard
-- shows (D day, W ISO week, M month, Y year; `period_start` is the period's first day). Distinct
-- players are not a sum of days: keeping them per whole period makes "players this month" a count
-- of ~50 rows instead of a distinct count over a month of (day, player) pairs.
CREATE TABLE dashboard_period_players (
    club_id       BIGINT NOT NULL,
    period        CHAR(1) NOT NULL CHECK (period IN ('D', 'W', 'M', 'Y')),
    period_start  DATE NOT NULL,
    user_id       BIGINT NOT NULL,
    reservations  BIGINT NOT NULL,
    PRIMARY KEY (club_id, period, period_start, user_id)
);

-- The first day of the period of kind `kind` holding `d` (weeks start on Monday, as the
-- dashboard's do). Plain date arithmetic: no time zone involved.
CREATE FUNCTION bff_period_start(kind CHAR(1), d DATE) RETURNS DATE LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'W' THEN d - CAST(EXTRACT(ISODOW FROM d) AS INTEGER) + 1
        WHEN 'M' THEN d - CAST(EXTRACT(DAY FROM d) AS INTEGER) + 1
        WHEN 'Y' THEN make_date(CAST(EXTRACT(YEAR FROM d) AS INTEGER), 1, 1)
        ELSE d
    END
$$;

-- The three upserts that apply changed reservation rows to the rollups, for the trigger and the
-- backfill alike. `changes` is a query yielding reservation rows with a `sign` column (+1 counts a
-- row in, -1 out). Returned as text for the caller to run: a trigger's transition tables are in
-- scope only in the trigger function itself (a function it calls sees them empty). Keys are
-- upserted in key order, the tables always in this order, so that two statements never take the
-- same rows' locks in opposite orders.
CREATE FUNCTION bff_dashboard_rollup_statements(changes TEXT) RETURNS SETOF TEXT LANGUAGE plpgsql IMMUTABLE AS $$
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

-- Applies one statement's changes: its new rows count +1, its old rows -1 (an UPDATE is both).
-- Transition tables exist only for the statement kind that declares them, hence the text.
CREATE FUNCTION bff_dashboard_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    upsert TEXT;
BEGIN
    FOR upsert IN SELECT bff_dashboard_rollup_statements(CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT *, 1 AS sign FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT *, -1 AS sign FROM old_rows'
        ELSE 'SELECT *, 1 AS sign FROM new_rows UNION ALL SELECT *, -1 AS sign FROM old_rows'
    END) LOOP
        EXECUTE upsert;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION bff_dashboard_rollups_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE dashboard_day_totals, dashboard_hour_starts, dashboard_period_players;
    RETURN NULL;
END $$;

-- Created before the backfill: the trigger's lock on reservations holds writers off until this
-- migration commits, so no change falls between the backfill and the first trigger run.
CREATE TRIGGER reservations_rollup_insert AFTER INSERT ON reservations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups();
CREATE TRIGGER reservations_rollup_update AFTER UPDATE ON reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups();
CREATE TRIGGER reservations_rollup_delete AFTER DELETE ON reservations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups();
CREATE TRIGGER reservations_rollup_truncate AFTER TRUNCATE ON reservations
    FOR EACH STATEMENT EXECUTE FUNCTION bff_dashboard_rollups_truncate();

-- The backfill: every existing reservation counted in, by the same upserts as the trigger. They
-- write in key order, so a club's days share heap pages (a club-month: ~20 pages instead of ~900
-- when written in hash order).
DO $$
DECLARE
    upsert TEXT;
BEGIN
    FOR upsert IN SELECT bff_dashboard_rollup_statements('SELECT *, 1 AS sign FROM reservations') LOOP
        EXECUTE upsert;
    END LOOP;
END $$;
