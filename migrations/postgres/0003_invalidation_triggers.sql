-- Changes made behind the gateway's back (SQL by hand, another service) reach every gateway's
-- cache: each trigger publishes the cache tag the change invalidates on the channel
-- `bff_invalidate`, which every gateway LISTENs on. A deactivated user or membership thus loses
-- access on the next request. Only UPDATE and DELETE: rows inserted later are not cached yet.
-- (Reservations are left out: the gateway's own mutations invalidate them, and bulk loads of
-- millions of rows should not pay a trigger per row.)

-- bff_notify_row(prefix, column): publishes prefix || the changed row's column (OLD: for an UPDATE
-- the row as it was, the same id).
CREATE FUNCTION bff_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bff_invalidate', TG_ARGV[0] || (to_jsonb(OLD) ->> TG_ARGV[1]));
    RETURN NULL;
END $$;

CREATE FUNCTION bff_notify_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bff_invalidate', TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER users_invalidate AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bff_notify_row('user:', 'id');
CREATE TRIGGER organization_memberships_invalidate AFTER UPDATE OR DELETE ON organization_memberships
    FOR EACH ROW EXECUTE FUNCTION bff_notify_row('user:', 'user_id');
CREATE TRIGGER club_memberships_invalidate AFTER UPDATE OR DELETE ON club_memberships
    FOR EACH ROW EXECUTE FUNCTION bff_notify_row('user:', 'user_id');
CREATE TRIGGER clubs_invalidate AFTER UPDATE OR DELETE ON clubs
    FOR EACH ROW EXECUTE FUNCTION bff_notify_row('club:', 'id');
CREATE TRIGGER courts_invalidate AFTER UPDATE OR DELETE ON courts
    FOR EACH ROW EXECUTE FUNCTION bff_notify_row('club:', 'club_id');
CREATE TRIGGER club_schedules_invalidate AFTER UPDATE OR DELETE ON club_schedules
    FOR EACH ROW EXECUTE FUNCTION bff_notify_row('club:', 'club_id');
-- An organization's name or state is part of every cached club and principal: rare, so all.
CREATE TRIGGER organizations_invalidate AFTER UPDATE OR DELETE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION bff_notify_tag('all');
CREATE TRIGGER role_permissions_invalidate AFTER INSERT OR UPDATE OR DELETE ON role_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION bff_notify_tag('role_permissions');
