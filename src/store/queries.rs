//! Statement texts. Shared text runs on both engines (sqlx binds `$N` on SQLite too); pairs are
//! `(postgres, sqlite)` where the dialects differ: id lists (`= ANY($1)` against `json_each`),
//! time arithmetic and decimal input.

/// Builds the `(postgres, sqlite)` pair of a statement filtering `$column` by the id list `$1`.
macro_rules! by_ids {
    ($head:expr, $column:literal, $tail:literal) => {
        (
            concat!($head, " WHERE ", $column, " = ANY($1) ", $tail),
            concat!(
                $head,
                " WHERE ",
                $column,
                " IN (SELECT value FROM json_each($1)) ",
                $tail
            ),
        )
    };
}

macro_rules! user_columns {
    () => {
        "u.id, u.email, u.full_name, u.avatar_url, u.is_active, u.is_superuser, u.current_organization_id, u.last_login_at"
    };
}

macro_rules! club_select {
    () => {
        "SELECT c.id, c.organization_id, c.name, c.slug, c.timezone, c.is_active, \
         o.name AS org_name, o.slug AS org_slug, o.is_active AS org_is_active \
         FROM clubs c JOIN organizations o ON o.id = c.organization_id"
    };
}

macro_rules! court_select {
    () => {
        "SELECT id, club_id, name, surface, is_indoor, is_active, is_maintenance, \
         CAST(ROUND(price_per_hour * 100) AS BIGINT) AS price_cents FROM courts"
    };
}

macro_rules! reservation_columns {
    () => {
        "id, club_id, court_id, created_by_id, date, start_time, end_time, status, \
         CAST(ROUND(price * 100) AS BIGINT) AS price_cents, idempotency_key, created_at, updated_at"
    };
}

/// The user and all active memberships (of active organizations and clubs) in one statement.
pub(crate) const PRINCIPAL: &str = concat!(
    "SELECT ", user_columns!(), ", m.kind AS m_kind, m.organization_id AS m_org_id, m.club_id AS m_club_id, \
     m.role AS m_role, o.name AS o_name, o.slug AS o_slug \
     FROM users u \
     LEFT JOIN ( \
        SELECT 'org' AS kind, om.user_id, om.organization_id, CAST(NULL AS BIGINT) AS club_id, om.role \
        FROM organization_memberships om JOIN organizations o ON o.id = om.organization_id \
        WHERE om.user_id = $1 AND om.is_active AND o.is_active \
        UNION ALL \
        SELECT 'club', cm.user_id, c.organization_id, cm.club_id, cm.role \
        FROM club_memberships cm JOIN clubs c ON c.id = cm.club_id \
        JOIN organizations o ON o.id = c.organization_id \
        WHERE cm.user_id = $1 AND cm.is_active AND c.is_active AND o.is_active \
     ) m ON m.user_id = u.id \
     LEFT JOIN organizations o ON o.id = m.organization_id \
     WHERE u.id = $1"
);

pub(crate) const USERS_BY_IDS: (&str, &str) = by_ids!(
    concat!("SELECT ", user_columns!(), " FROM users u"),
    "u.id",
    ""
);

pub(crate) const USER_BY_EMAIL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users u WHERE u.email = $1"
);

pub(crate) const ORGANIZATIONS_BY_IDS: (&str, &str) = by_ids!(
    "SELECT id, name, slug, is_active FROM organizations",
    "id",
    ""
);

pub(crate) const CLUBS_BY_IDS: (&str, &str) = by_ids!(club_select!(), "c.id", "");

pub(crate) const CLUBS_BY_ORGANIZATIONS: (&str, &str) = by_ids!(
    club_select!(),
    "c.is_active AND c.organization_id",
    "ORDER BY c.name, c.id"
);

pub(crate) const COURTS_BY_IDS: (&str, &str) = by_ids!(court_select!(), "id", "");

pub(crate) const COURTS_BY_CLUBS: (&str, &str) =
    by_ids!(court_select!(), "club_id", "ORDER BY club_id, id");

/// A club with its organization as one `club` row, then its parts (`$parts`: rows of the same 20
/// columns, the club's nine `NULL`), in no order: `directory::fold_layout` folds them by column
/// position and sorts each part. One club row instead of the club's columns on every part row,
/// and no `ORDER BY`: Postgres ran the statement in 55 % of the time (`pgbench`,
/// docs/performance.md, run 18).
macro_rules! club_with_parts {
    ($parts:expr) => {
        concat!(
            "SELECT c.id, c.organization_id, c.name, c.slug, c.timezone, c.is_active, \
             o.name AS org_name, o.slug AS org_slug, o.is_active AS org_is_active, \
             'club' AS part, CAST(NULL AS BIGINT) AS court_id, CAST(NULL AS TEXT) AS court_name, \
             CAST(NULL AS TEXT) AS surface, CAST(NULL AS BOOLEAN) AS is_indoor, \
             CAST(NULL AS BOOLEAN) AS court_active, CAST(NULL AS BOOLEAN) AS is_maintenance, \
             CAST(NULL AS BIGINT) AS court_price_cents, CAST(NULL AS INTEGER) AS weekday, \
             CAST(NULL AS TIME) AS opens_at, CAST(NULL AS TIME) AS closes_at \
             FROM clubs c JOIN organizations o ON o.id = c.organization_id WHERE c.id = $1 \
             UNION ALL ",
            $parts
        )
    };
}

/// The courts and the active schedule of club `$1`, as layout parts.
macro_rules! layout_parts {
    () => {
        "SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                'court', id, name, surface, is_indoor, is_active, is_maintenance, \
                CAST(ROUND(price_per_hour * 100) AS BIGINT), NULL, NULL, NULL \
         FROM courts WHERE club_id = $1 \
         UNION ALL \
         SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                'schedule', NULL, NULL, NULL, NULL, NULL, NULL, NULL, weekday, opens_at, closes_at \
         FROM club_schedules WHERE club_id = $1 AND is_active"
    };
}

/// Club, organization, courts and active schedule: the static part of dashboards and
/// availability, in one statement.
pub(crate) const CLUB_LAYOUT: &str = club_with_parts!(layout_parts!());

/// [`CLUB_LAYOUT`] and the club's busy intervals on date `$2` ([`BUSY_INTERVALS`] as `busy` parts:
/// court, start as `opens_at`, end as `closes_at`): a grid in one statement when neither the
/// layout nor the slots are cached.
pub(crate) const CLUB_DAY: &str = club_with_parts!(concat!(
    layout_parts!(),
    " UNION ALL \
     SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
            'busy', court_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, start_time, end_time \
     FROM reservations WHERE club_id = $1 AND date = $2 AND status <> 'cancelled'"
));

pub(crate) const BUSY_INTERVALS: &str = "SELECT court_id, start_time, end_time FROM reservations \
     WHERE club_id = $1 AND date = $2 AND status <> 'cancelled'";

pub(crate) const RESERVATIONS_ON: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations \
     WHERE club_id = $1 AND date = $2 AND ($3 IS NULL OR created_by_id = $3) \
     ORDER BY start_time, court_id, id"
);

pub(crate) const RESERVATION_BY_ID: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE id = $1"
);

pub(crate) const RESERVATION_BY_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE created_by_id = $1 AND idempotency_key = $2"
);

/// `INSERT INTO reservations (…) {source} RETURNING …`: the column list once, for both engines.
macro_rules! insert_reservation {
    ($source:literal) => {
        concat!(
            "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, \
             price, idempotency_key, created_at, updated_at) ", $source, " RETURNING ", reservation_columns!()
        )
    };
}

/// The price arrives as a decimal string: Postgres casts it to NUMERIC, SQLite stores the text.
///
/// On Postgres, bookings of one court take turns on a transaction-scoped advisory lock (key space
/// 1346454597, "PADE", then the court id) before inserting. Without it two racing overlapping
/// inserts each wait on the other's in-progress exclusion entry: a deadlock that Postgres breaks
/// only after `deadlock_timeout` (1 s) while both hold pooled connections; 200 racing bookings
/// then queued long enough to exhaust the pool's acquire timeout (SERVICE_UNAVAILABLE). With the
/// turn, the second insert sees the first one committed and fails the constraint at once. One
/// statement still: the lock is taken by the CTE the INSERT reads from, released at commit.
///
/// The player's quota is part of the statement: no row is inserted while the creator already
/// holds `$13` live bookings at the club (pending or confirmed, not over: after `$11` `$12`, the
/// club's today and time). On Postgres a player's bookings also take turns per user
/// (`LOCK_BOOKER`, a statement before, in the same transaction), so this statement's snapshot
/// sees every booking of the same player that raced it; SQLite has one writer at a time.
pub(crate) const INSERT_RESERVATION: (&str, &str) = (
    concat!(
        "WITH turn AS (SELECT pg_advisory_xact_lock(1346454597, CAST($2 % 2147483647 AS INTEGER))) ",
        insert_reservation!(
            "SELECT $1, $2, $3, $4, $5, $6, $7, CAST($8 AS NUMERIC), $9, $10, $10 FROM turn \
             WHERE (SELECT COUNT(*) FROM reservations a WHERE a.club_id = $1 AND a.created_by_id = $3 \
                    AND a.status IN ('pending', 'confirmed') \
                    AND (a.date > $11 OR (a.date = $11 AND a.end_time > $12))) < $13"
        )
    ),
    insert_reservation!(
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10 \
         WHERE (SELECT COUNT(*) FROM reservations a WHERE a.club_id = $1 AND a.created_by_id = $3 \
                AND a.status IN ('pending', 'confirmed') \
                AND (a.date > $11 OR (a.date = $11 AND a.end_time > $12))) < $13"
    ),
);

/// A player's bookings take turns (key space 1346454598, then the user id), in the transaction of
/// the insert: see [`INSERT_RESERVATION`].
pub(crate) const LOCK_BOOKER: &str =
    "SELECT pg_advisory_xact_lock(1346454598, CAST($1 % 2147483647 AS INTEGER))";

/// A club's booking rules.
pub(crate) const BOOKING_RULES: &str =
    "SELECT booking_horizon_days, max_active_bookings, cancellation_cutoff_minutes \
     FROM clubs WHERE id = $1";

/// Conditional: only a pending or confirmed reservation is cancelled, so of two racing
/// cancellations one changes the row and the other changes nothing (and invalidates nothing).
pub(crate) const CANCEL_RESERVATION: &str = concat!(
    "UPDATE reservations SET status = 'cancelled', updated_at = $2 \
     WHERE id = $1 AND status IN ('pending', 'confirmed') RETURNING ",
    reservation_columns!()
);

pub(crate) const SET_COURT_MAINTENANCE: &str =
    "UPDATE courts SET is_maintenance = $2 WHERE id = $1 \
     RETURNING id, club_id, name, surface, is_indoor, is_active, is_maintenance, \
     CAST(ROUND(price_per_hour * 100) AS BIGINT) AS price_cents";

pub(crate) const SET_CURRENT_ORGANIZATION: &str =
    "UPDATE users SET current_organization_id = $2 WHERE id = $1";

pub(crate) const ROLE_PERMISSIONS: &str =
    "SELECT role, permission FROM role_permissions ORDER BY role, permission";

/// The dashboard in one statement (SQLite): one scan of the club's reservations between the
/// previous period's first day ($2) and the current period's last day ($4), grouped five ways.
/// Times are `HH:MM:SS` text: minutes and hours come from their digits.
pub(crate) const DASHBOARD_SQLITE: &str = "\
    WITH base AS ( \
        SELECT date, court_id, status, created_by_id, \
               CAST(CASE WHEN date >= $3 THEN 1 ELSE 0 END AS BIGINT) AS cur, \
               CAST(ROUND(price * 100) AS BIGINT) AS cents, \
               CAST((CAST(substr(end_time, 1, 2) AS INTEGER) * 60 + CAST(substr(end_time, 4, 2) AS INTEGER)) \
                  - (CAST(substr(start_time, 1, 2) AS INTEGER) * 60 + CAST(substr(start_time, 4, 2) AS INTEGER)) \
                  AS BIGINT) AS minutes, \
               CAST(CAST(substr(start_time, 1, 2) AS INTEGER) AS BIGINT) AS hour \
        FROM reservations WHERE club_id = $1 AND date >= $2 AND date <= $4 \
    ) \
    SELECT 'period' AS part, cur AS key_int, CAST(NULL AS DATE) AS day, status, COUNT(*) AS n, \
           CAST(SUM(cents) AS BIGINT) AS cents, CAST(SUM(minutes) AS BIGINT) AS minutes \
    FROM base GROUP BY cur, status \
    UNION ALL \
    SELECT 'court', court_id, NULL, status, COUNT(*), CAST(SUM(cents) AS BIGINT), CAST(SUM(minutes) AS BIGINT) \
    FROM base WHERE cur = 1 GROUP BY court_id, status \
    UNION ALL \
    SELECT 'day', CAST(NULL AS BIGINT), date, status, COUNT(*), CAST(SUM(cents) AS BIGINT), CAST(SUM(minutes) AS BIGINT) \
    FROM base WHERE cur = 1 GROUP BY date, status \
    UNION ALL \
    SELECT 'hour', hour, NULL, NULL, COUNT(*), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) \
    FROM base WHERE cur = 1 AND status <> 'cancelled' GROUP BY hour \
    UNION ALL \
    SELECT 'players', cur, NULL, NULL, COUNT(DISTINCT created_by_id), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) \
    FROM base WHERE status <> 'cancelled' GROUP BY cur";

/// The dashboard on Postgres, from the rollups of migrations 0004 and 0006, in the row shape of
/// [`DASHBOARD_SQLITE`]: grouped here, so a club-month sends ~150 rows instead of the ~500
/// court-day rows the domain used to sum (decoding them was most of a miss's cost; callgrind in
/// docs/performance.md "Run 15"). The rollups stay per day, so no booking waits on a row another
/// booking of the same month holds. `$2` and `$3` are the previous and current period starts,
/// `$4` the current period's last day, `$5` the period kind (`D`, `W`, `M`, `Y`) of the players
/// rollup. Counts that fell back to 0 are skipped.
pub(crate) const DASHBOARD_PG: &str = "\
    SELECT 'period' AS part, CAST(CASE WHEN date >= $3 THEN 1 ELSE 0 END AS BIGINT) AS key_int, \
           CAST(NULL AS DATE) AS day, status, CAST(SUM(reservations) AS BIGINT) AS n, \
           CAST(SUM(cents) AS BIGINT) AS cents, CAST(SUM(minutes) AS BIGINT) AS minutes \
    FROM dashboard_day_club_totals WHERE club_id = $1 AND date >= $2 AND date <= $4 AND reservations <> 0 \
    GROUP BY 2, status \
    UNION ALL \
    SELECT 'court', court_id, NULL, status, CAST(SUM(reservations) AS BIGINT), CAST(SUM(cents) AS BIGINT), \
           CAST(SUM(minutes) AS BIGINT) \
    FROM dashboard_day_totals WHERE club_id = $1 AND date >= $3 AND date <= $4 AND reservations <> 0 \
    GROUP BY court_id, status \
    UNION ALL \
    SELECT 'day', NULL, date, status, reservations, cents, minutes \
    FROM dashboard_day_club_totals WHERE club_id = $1 AND date >= $3 AND date <= $4 AND reservations <> 0 \
    UNION ALL \
    SELECT 'hour', CAST(hour AS BIGINT), NULL, NULL, CAST(SUM(reservations) AS BIGINT), NULL, NULL \
    FROM dashboard_hour_starts WHERE club_id = $1 AND date >= $3 AND date <= $4 AND reservations <> 0 \
    GROUP BY hour \
    UNION ALL \
    SELECT 'players', CAST(CASE WHEN period_start = $3 THEN 1 ELSE 0 END AS BIGINT), NULL, NULL, COUNT(*), NULL, NULL \
    FROM dashboard_period_players \
    WHERE club_id = $1 AND period = CAST($5 AS CHAR(1)) AND period_start IN ($2, $3) AND reservations > 0 \
    GROUP BY period_start";
