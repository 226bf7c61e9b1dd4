-- A club's state is also part of its members' cached principals: who may use which club is
-- read once per user (active memberships of *active* clubs, with the club's organization) and
-- tagged `user:U`. So an UPDATE that deactivates or reactivates a club, or moves it to another
-- organization, also makes its members' principals stale, not only the club's own values
-- (`club:C`). Other club updates (a rename, a new time zone) stay `club:C` only.
--
-- A club with more than 1 000 members is applied as `all` instead: one full invalidation on a
-- rare administrative change, rather than tens of thousands of tags in one outbox row.
CREATE OR REPLACE FUNCTION bff_outbox_clubs_update() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    members TEXT[];
BEGIN
    SELECT array_agg(DISTINCT 'user:' || cm.user_id) INTO members
    FROM club_memberships cm
    WHERE cm.club_id IN (
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.is_active IS DISTINCT FROM o.is_active
           OR n.organization_id IS DISTINCT FROM o.organization_id
    );
    IF cardinality(members) > 1000 THEN
        PERFORM bff_outbox_append(ARRAY['all']);
        RETURN NULL;
    END IF;
    PERFORM bff_outbox_append((
        SELECT array_agg(DISTINCT tag ORDER BY tag)
        FROM (
            SELECT 'club:' || r.id AS tag
            FROM (SELECT id FROM new_rows UNION SELECT id FROM old_rows) r
            UNION ALL
            SELECT unnest(members)
        ) t
    ));
    RETURN NULL;
END $body$;
