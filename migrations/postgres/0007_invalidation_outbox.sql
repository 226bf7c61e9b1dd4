-- Writes made outside the gateway reach every cache, and none is lost while a gateway is away
-- (issue 16, docs/operations.md "Writes made elsewhere").
--
-- Every statement that writes a cached table (INSERT, UPDATE, DELETE, COPY; TRUNCATE too) appends
-- one row to `bff_invalidation_outbox`: the distinct cache tags it makes stale, the same tags the
-- gateway's own mutations invalidate. Reservations are tagged per (club, date), never per row, so a
-- COPY of a million rows is one outbox row holding one tag set per (club, date) it touched. NOTIFY
-- on `bff_invalidate` is only a wake-up (payload `outbox`): each gateway tails the outbox from the
-- last sequence it applied, so a dropped listener or a restart catches up instead of missing
-- notifications. Gateways prune rows older than `database.outbox_retention`.
--
-- This replaces 0003's row triggers (UPDATE and DELETE only, no reservations, inserts unseen).

DROP TRIGGER users_invalidate ON users;
DROP TRIGGER organization_memberships_invalidate ON organization_memberships;
DROP TRIGGER club_memberships_invalidate ON club_memberships;
DROP TRIGGER clubs_invalidate ON clubs;
DROP TRIGGER courts_invalidate ON courts;
DROP TRIGGER club_schedules_invalidate ON club_schedules;
DROP TRIGGER organizations_invalidate ON organizations;
DROP TRIGGER role_permissions_invalidate ON role_permissions;
DROP FUNCTION bff_notify_row();
DROP FUNCTION bff_notify_tag();

CREATE TABLE bff_invalidation_outbox (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tags        TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX bff_invalidation_outbox_created_idx ON bff_invalidation_outbox (created_at);

-- What a booking change on `d` makes stale (Rust: `cache::keys::tags::booking_change`): the day's
-- availability and the dashboards of every period kind holding the day.
CREATE FUNCTION bff_booking_tags(club BIGINT, d DATE) RETURNS TEXT[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[
        'club:' || club || ':slots:' || to_char(d, 'YYYY-MM-DD'),
        'club:' || club || ':day:' || to_char(d, 'YYYY-MM-DD'),
        'club:' || club || ':week:' || to_char(bff_period_start('W', d), 'YYYY-MM-DD'),
        'club:' || club || ':month:' || to_char(bff_period_start('M', d), 'YYYY-MM-DD'),
        'club:' || club || ':year:' || to_char(bff_period_start('Y', d), 'YYYY-MM-DD')
    ]
$$;

-- Appends one outbox row for a statement's tags (none: nothing) and wakes the gateways. SECURITY
-- DEFINER: a role that may write a cached table need not be granted the outbox (its writes kept
-- working when these triggers arrived). NOTIFY makes a transaction unable to PREPARE TRANSACTION;
-- two-phase writers are not supported (docs/operations.md).
CREATE FUNCTION bff_outbox_append(tags TEXT[]) RETURNS void LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF tags IS NOT NULL AND cardinality(tags) > 0 THEN
        INSERT INTO bff_invalidation_outbox (tags) VALUES (tags);
        PERFORM pg_notify('bff_invalidate', 'outbox');
    END IF;
END $$;

-- A TRUNCATE, or a change to an organization (its name and state are part of every cached club
-- and principal; rare): the tag given as the trigger's argument.
CREATE FUNCTION bff_outbox_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bff_outbox_append(ARRAY[TG_ARGV[0]]);
    RETURN NULL;
END $$;

-- One statement-level trigger function per table and statement kind, static SQL over that kind's
-- transition tables (they exist only for the kind that declares them, and only in the trigger
-- function itself), so that each is planned once per connection. The changed rows (old and new)
-- are reduced to their distinct keys first (a COPY of 1.9 M reservations: ~33 000 club-dates),
-- then each key `r` yields the tags it makes stale.
DO $do$
DECLARE
    tbl TEXT;
    keys TEXT;
    expr TEXT;
    kind TEXT;
    source TEXT;
BEGIN
    FOR tbl, keys, expr IN VALUES
        ('reservations', 'club_id, date', 'bff_booking_tags(r.club_id, r.date)'),
        ('users', 'id', 'ARRAY[''user:'' || r.id]'),
        ('organization_memberships', 'user_id', 'ARRAY[''user:'' || r.user_id]'),
        ('club_memberships', 'user_id', 'ARRAY[''user:'' || r.user_id]'),
        ('clubs', 'id', 'ARRAY[''club:'' || r.id]'),
        ('courts', 'club_id', 'ARRAY[''club:'' || r.club_id]'),
        ('club_schedules', 'club_id', 'ARRAY[''club:'' || r.club_id]')
    LOOP
        FOR kind, source IN VALUES
            ('insert', 'SELECT * FROM new_rows'),
            ('delete', 'SELECT * FROM old_rows'),
            ('update', 'SELECT * FROM new_rows UNION ALL SELECT * FROM old_rows')
        LOOP
            EXECUTE format(
                $f$CREATE FUNCTION bff_outbox_%1$s_%2$s() RETURNS trigger LANGUAGE plpgsql AS $body$
                BEGIN
                    PERFORM bff_outbox_append((
                        SELECT array_agg(DISTINCT tag ORDER BY tag)
                        FROM (SELECT %3$s AS tags FROM (SELECT DISTINCT %5$s FROM (%4$s) s) r) t,
                             unnest(t.tags) AS tag
                    ));
                    RETURN NULL;
                END $body$$f$,
                tbl, kind, expr, source, keys);
        END LOOP;
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_insert AFTER INSERT ON %1$s REFERENCING NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_%1$s_insert()', tbl);
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_update AFTER UPDATE ON %1$s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_%1$s_update()', tbl);
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_delete AFTER DELETE ON %1$s REFERENCING OLD TABLE AS old_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_%1$s_delete()', tbl);
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_truncate AFTER TRUNCATE ON %1$s
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_tag(''all'')', tbl);
    END LOOP;
END $do$;

-- Organizations and role permissions: one tag whatever the rows, but only when a row changed (a
-- statement that matched nothing must not flush every replica).
DO $do$
DECLARE
    tbl TEXT;
    tag TEXT;
    kind TEXT;
    source TEXT;
BEGIN
    FOR tbl, tag IN VALUES ('organizations', 'all'), ('role_permissions', 'role_permissions') LOOP
        FOR kind, source IN VALUES ('insert', 'new_rows'), ('delete', 'old_rows'), ('update', 'new_rows')
        LOOP
            EXECUTE format(
                $f$CREATE FUNCTION bff_outbox_%1$s_%2$s() RETURNS trigger LANGUAGE plpgsql AS $body$
                BEGIN
                    IF EXISTS (SELECT 1 FROM %3$s) THEN
                        PERFORM bff_outbox_append(ARRAY[%4$L]);
                    END IF;
                    RETURN NULL;
                END $body$$f$,
                tbl, kind, source, tag);
        END LOOP;
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_insert AFTER INSERT ON %1$s REFERENCING NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_%1$s_insert()', tbl);
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_update AFTER UPDATE ON %1$s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_%1$s_update()', tbl);
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_delete AFTER DELETE ON %1$s REFERENCING OLD TABLE AS old_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_%1$s_delete()', tbl);
        EXECUTE format(
            'CREATE TRIGGER %1$s_outbox_truncate AFTER TRUNCATE ON %1$s
                 FOR EACH STATEMENT EXECUTE FUNCTION bff_outbox_tag(%2$L)', tbl, tag);
    END LOOP;
END $do$;
