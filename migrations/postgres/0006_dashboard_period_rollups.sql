-- Dashboard rollups per whole period: every part of a dashboard becomes a read of a few rows by
-- primary key, with nothing left to group (issue 15 item 5). Migration 0004 kept totals per day
-- and court, and start hours per day; a month's dashboard still summed ~480 day rows for the
-- previous period, ~450 hour rows for the peak hours, and sent ~460 court-day rows for the
-- domain to sum (docs/performance.md "Dashboard rollups"). Now:
--
-- | table                      | key                                              |
-- |----------------------------|--------------------------------------------------|
-- | dashboard_period_totals    | club, period kind, period start, status          |
-- | dashboard_period_courts    | club, period kind, period start, court, status   |
-- | dashboard_period_hours     | club, period kind, period start, start hour      |
-- | dashboard_period_players   | club, period kind, period start, creator (0004)  |
--
-- Period kinds are D (day), W (ISO week), M (month) and Y (year). The day kind of the totals is the
-- dashboard's `daily`; the day kind of the courts is what `dashboard_day_totals` held, and the
-- day kind of the hours what `dashboard_hour_starts` held, so both of those are dropped. A booking
-- now upserts four rows in each of four tables (16) instead of six rows in three, and costs less
-- than before: the trigger functions are now static SQL, planned once per connection, where 0004's
-- one function planned every upsert on every call through EXECUTE (pgbench, one booking INSERT:
-- 1.33-1.42 ms with 0004, 2.0 ms with these four upserts through EXECUTE, 1.03-1.07 ms static).

-- Holds every writer off until this migration commits: no change can fall between the backfill
-- and the first run of the new statements.
LOCK TABLE reservations IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE dashboard_period_totals (
    club_id       BIGINT NOT NULL,
    period        CHAR(1) NOT NULL CHECK (period IN ('D', 'W', 'M', 'Y')),
    period_start  DATE NOT NULL,
    status        TEXT NOT NULL,
    reservations  BIGINT NOT NULL,
    cents         BIGINT NOT NULL,
    minutes       BIGINT NOT NULL,
    PRIMARY KEY (club_id, period, period_start, status)
);

CREATE TABLE dashboard_period_courts (
    club_id       BIGINT NOT NULL,
    period        CHAR(1) NOT NULL CHECK (period IN ('D', 'W', 'M', 'Y')),
    period_start  DATE NOT NULL,
    court_id      BIGINT NOT NULL,
    status        TEXT NOT NULL,
    reservations  BIGINT NOT NULL,
    cents         BIGINT NOT NULL,
    minutes       BIGINT NOT NULL,
    PRIMARY KEY (club_id, period, period_start, court_id, status)
);

CREATE TABLE dashboard_period_hours (
    club_id       BIGINT NOT NULL,
    period        CHAR(1) NOT NULL CHECK (period IN ('D', 'W', 'M', 'Y')),
    period_start  DATE NOT NULL,
    hour          SMALLINT NOT NULL,
    reservations  BIGINT NOT NULL,
    PRIMARY KEY (club_id, period, period_start, hour)
);

-- The backfill, from the day rollups (already exact sums of every reservation): a few hundred
-- thousand rows regrouped instead of 1.9 M reservations. Key order, as the upserts write.
INSERT INTO dashboard_period_totals (club_id, period, period_start, status, reservations, cents, minutes)
SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day, status,
       SUM(reservations), SUM(cents), SUM(minutes)
FROM dashboard_day_totals CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
GROUP BY club_id, kinds.kind, start_day, status
ORDER BY club_id, kinds.kind, start_day, status;

INSERT INTO dashboard_period_courts (club_id, period, period_start, court_id, status, reservations, cents, minutes)
SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day, court_id, status,
       SUM(reservations), SUM(cents), SUM(minutes)
FROM dashboard_day_totals CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
GROUP BY club_id, kinds.kind, start_day, court_id, status
ORDER BY club_id, kinds.kind, start_day, court_id, status;

INSERT INTO dashboard_period_hours (club_id, period, period_start, hour, reservations)
SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day, hour, SUM(reservations)
FROM dashboard_hour_starts CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
GROUP BY club_id, kinds.kind, start_day, hour
ORDER BY club_id, kinds.kind, start_day, hour;

DROP TABLE dashboard_day_totals, dashboard_hour_starts;

-- The upserts that apply changed reservation rows to the rollups, the one source of the trigger
-- functions below. Tables in this order, keys in key order,
-- so that two statements never take the same rows' locks in opposite orders. Each statement
-- sums its rows per key first: a COPY of millions of rows is one grouped upsert per table.
CREATE OR REPLACE FUNCTION bff_dashboard_rollup_statements(changes TEXT) RETURNS SETOF TEXT LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_period_totals AS t (club_id, period, period_start, status, reservations, cents, minutes)
        SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day, status, SUM(sign),
               SUM(sign * CAST(ROUND(price * 100) AS BIGINT)),
               SUM(sign * CAST(EXTRACT(EPOCH FROM (end_time - start_time)) / 60 AS BIGINT))
        FROM c CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
        GROUP BY club_id, kinds.kind, start_day, status
        ORDER BY club_id, kinds.kind, start_day, status
        ON CONFLICT (club_id, period, period_start, status) DO UPDATE SET
            reservations = t.reservations + EXCLUDED.reservations,
            cents = t.cents + EXCLUDED.cents,
            minutes = t.minutes + EXCLUDED.minutes
    $sql$, changes);
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_period_courts AS t (club_id, period, period_start, court_id, status, reservations, cents, minutes)
        SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day, court_id, status, SUM(sign),
               SUM(sign * CAST(ROUND(price * 100) AS BIGINT)),
               SUM(sign * CAST(EXTRACT(EPOCH FROM (end_time - start_time)) / 60 AS BIGINT))
        FROM c CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
        GROUP BY club_id, kinds.kind, start_day, court_id, status
        ORDER BY club_id, kinds.kind, start_day, court_id, status
        ON CONFLICT (club_id, period, period_start, court_id, status) DO UPDATE SET
            reservations = t.reservations + EXCLUDED.reservations,
            cents = t.cents + EXCLUDED.cents,
            minutes = t.minutes + EXCLUDED.minutes
    $sql$, changes);
    RETURN NEXT format($sql$
        WITH c AS (%s)
        INSERT INTO dashboard_period_hours AS t (club_id, period, period_start, hour, reservations)
        SELECT club_id, kinds.kind, bff_period_start(kinds.kind, date) AS start_day,
               CAST(EXTRACT(HOUR FROM start_time) AS SMALLINT) AS start_hour, SUM(sign)
        FROM c CROSS JOIN (VALUES ('D'), ('W'), ('M'), ('Y')) AS kinds (kind)
        WHERE status <> 'cancelled' GROUP BY club_id, kinds.kind, start_day, start_hour
        ORDER BY club_id, kinds.kind, start_day, start_hour
        ON CONFLICT (club_id, period, period_start, hour) DO UPDATE SET reservations = t.reservations + EXCLUDED.reservations
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
    TRUNCATE dashboard_period_totals, dashboard_period_courts, dashboard_period_hours, dashboard_period_players;
    RETURN NULL;
END $$;
