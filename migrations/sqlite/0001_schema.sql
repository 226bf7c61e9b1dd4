-- padel-bff schema (embedded SQLite), mirroring migrations/postgres. Dates are TEXT 'YYYY-MM-DD',
-- times TEXT 'HH:MM:SS', money TEXT decimals ('24.00') so nothing passes through floating point
-- on the way in. Never edit an applied migration: add a new one.

CREATE TABLE organizations (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    is_active  BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE users (
    id                       INTEGER PRIMARY KEY,
    email                    TEXT NOT NULL UNIQUE,
    full_name                TEXT NOT NULL,
    avatar_url               TEXT,
    is_active                BOOLEAN NOT NULL DEFAULT TRUE,
    is_superuser             BOOLEAN NOT NULL DEFAULT FALSE,
    current_organization_id  INTEGER REFERENCES organizations (id) ON DELETE SET NULL,
    last_login_at            TEXT
);

CREATE TABLE organization_memberships (
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id  INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    is_active        BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, organization_id)
);
CREATE INDEX organization_memberships_user_idx
    ON organization_memberships (user_id, organization_id, is_active, role);

CREATE TABLE clubs (
    id               INTEGER PRIMARY KEY,
    organization_id  INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    slug             TEXT NOT NULL,
    timezone         TEXT NOT NULL,
    is_active        BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (organization_id, slug)
);
CREATE INDEX clubs_organization_idx ON clubs (organization_id, is_active);

CREATE TABLE club_memberships (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    club_id    INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('manager', 'staff', 'player')),
    is_active  BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, club_id)
);

CREATE TABLE courts (
    id              INTEGER PRIMARY KEY,
    club_id         INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    surface         TEXT NOT NULL,
    is_indoor       BOOLEAN NOT NULL DEFAULT FALSE,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    is_maintenance  BOOLEAN NOT NULL DEFAULT FALSE,
    price_per_hour  TEXT NOT NULL
);
CREATE INDEX courts_club_idx ON courts (club_id, is_active, is_maintenance);

CREATE TABLE club_schedules (
    club_id    INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    weekday    INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    opens_at   TEXT NOT NULL,
    closes_at  TEXT NOT NULL,
    is_active  BOOLEAN NOT NULL DEFAULT TRUE,
    CHECK (opens_at < closes_at)
);
CREATE INDEX club_schedules_club_idx ON club_schedules (club_id, weekday, is_active);

CREATE TABLE reservations (
    id               INTEGER PRIMARY KEY,
    club_id          INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    court_id         INTEGER NOT NULL REFERENCES courts (id) ON DELETE CASCADE,
    created_by_id    INTEGER NOT NULL REFERENCES users (id),
    date             TEXT NOT NULL,
    start_time       TEXT NOT NULL,
    end_time         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'completed', 'cancelled', 'no_show')),
    price            TEXT NOT NULL,
    idempotency_key  TEXT CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CHECK (start_time < end_time)
);
CREATE INDEX reservations_club_date_idx ON reservations (club_id, date, status, court_id);
CREATE INDEX reservations_club_status_idx ON reservations (club_id, status, date, created_by_id);
CREATE INDEX reservations_court_live_idx ON reservations (court_id, date, start_time, end_time)
    WHERE status IN ('pending', 'confirmed');
-- What the overlap triggers below look up (the partial index above cannot serve `<> 'cancelled'`).
CREATE INDEX reservations_court_date_idx ON reservations (court_id, date, start_time);
CREATE UNIQUE INDEX reservations_idempotency_key ON reservations (created_by_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- SQLite has no exclusion constraints: these triggers give the same guarantee. SQLite runs one
-- writer at a time, so the check and the write cannot interleave with another booking.
CREATE TRIGGER reservations_no_overlap_insert
BEFORE INSERT ON reservations
WHEN NEW.status <> 'cancelled' AND EXISTS (
    SELECT 1 FROM reservations r
    WHERE r.court_id = NEW.court_id AND r.date = NEW.date AND r.status <> 'cancelled'
      AND r.start_time < NEW.end_time AND NEW.start_time < r.end_time
)
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap');
END;

CREATE TRIGGER reservations_no_overlap_update
BEFORE UPDATE OF court_id, date, start_time, end_time, status ON reservations
WHEN NEW.status <> 'cancelled' AND EXISTS (
    SELECT 1 FROM reservations r
    WHERE r.id <> NEW.id AND r.court_id = NEW.court_id AND r.date = NEW.date
      AND r.status <> 'cancelled' AND r.start_time < NEW.end_time AND NEW.start_time < r.end_time
)
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap');
END;

CREATE TABLE role_permissions (
    role        TEXT NOT NULL,
    permission  TEXT NOT NULL,
    PRIMARY KEY (role, permission)
);
