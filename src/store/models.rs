//! Rows as the store returns them; both backends decode into the same structs.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use crate::domain::{money::Cents, ReservationStatus};

/// A user.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Unique email.
    pub email: String,
    /// Display name.
    pub full_name: String,
    /// Avatar image.
    pub avatar_url: Option<String>,
    /// Inactive users cannot sign in.
    pub is_active: bool,
    /// Sees everything.
    pub is_superuser: bool,
    /// The organization the user works in.
    pub current_organization_id: Option<i64>,
    /// Last sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
}

/// An organization (a club chain or operator).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct OrganizationRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// Inactive organizations are hidden.
    pub is_active: bool,
}

/// A club, with the organization it belongs to (always loaded together).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ClubRow {
    /// Id.
    pub id: i64,
    /// Owning organization.
    pub organization_id: i64,
    /// Name.
    pub name: String,
    /// Slug, unique within the organization.
    pub slug: String,
    /// IANA time zone of the club's wall clock.
    pub timezone: String,
    /// Inactive clubs are hidden.
    pub is_active: bool,
    /// The organization's name.
    pub org_name: String,
    /// The organization's slug.
    pub org_slug: String,
    /// Whether the organization is active.
    pub org_is_active: bool,
}

impl ClubRow {
    /// The organization part of the row.
    pub fn organization(&self) -> OrganizationRow {
        OrganizationRow {
            id: self.organization_id,
            name: self.org_name.clone(),
            slug: self.org_slug.clone(),
            is_active: self.org_is_active,
        }
    }
}

/// A court.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct CourtRow {
    /// Id.
    pub id: i64,
    /// Club.
    pub club_id: i64,
    /// Name.
    pub name: String,
    /// Surface (artificial grass, …).
    pub surface: String,
    /// Covered.
    pub is_indoor: bool,
    /// Inactive courts are retired.
    pub is_active: bool,
    /// In maintenance: listed, not bookable.
    pub is_maintenance: bool,
    /// Price per hour in cents.
    #[sqlx(rename = "price_cents")]
    pub price_per_hour_cents: i64,
}

impl CourtRow {
    /// Price per hour.
    pub fn price_per_hour(&self) -> Cents {
        Cents(self.price_per_hour_cents)
    }
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReservationRow {
    /// Id.
    pub id: i64,
    /// Club.
    pub club_id: i64,
    /// Court.
    pub court_id: i64,
    /// Who booked.
    pub created_by_id: i64,
    /// Local date.
    pub date: NaiveDate,
    /// Local start time.
    pub start_time: NaiveTime,
    /// Local end time.
    pub end_time: NaiveTime,
    /// Status, database form.
    pub status: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Client-chosen key making retries safe.
    pub idempotency_key: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl ReservationRow {
    /// Parsed status (the CHECK constraint keeps it valid).
    pub fn status(&self) -> ReservationStatus {
        ReservationStatus::parse(&self.status).unwrap_or(ReservationStatus::Pending)
    }
}

/// One row of the principal query: the user, and one membership (if any).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PrincipalRow {
    #[sqlx(flatten)]
    pub(crate) user: UserRow,
    pub(crate) m_kind: Option<String>,
    pub(crate) m_org_id: Option<i64>,
    pub(crate) m_club_id: Option<i64>,
    pub(crate) m_role: Option<String>,
    pub(crate) o_name: Option<String>,
    pub(crate) o_slug: Option<String>,
}

/// A user with every active membership, as the access rules need them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PrincipalRecord {
    /// The user.
    pub user: UserRow,
    /// Active memberships of active organizations, with the organization.
    pub organizations: Vec<(OrganizationRow, String)>,
    /// Active memberships of active clubs: (club id, club's organization id, role).
    pub clubs: Vec<(i64, i64, String)>,
}

/// A club with all its courts and its active weekly schedule, loaded in one statement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClubLayout {
    /// The club.
    pub club: ClubRow,
    /// Every court (active or not), by id.
    pub courts: Vec<CourtRow>,
    /// Active schedule rows: (weekday 1..7, opens, closes).
    pub schedule: Vec<(i32, NaiveTime, NaiveTime)>,
}

/// One grouped row of the dashboard query.
#[derive(Debug, Clone)]
pub(crate) struct DashboardRow {
    pub(crate) part: DashboardPart,
    pub(crate) key_int: Option<i64>,
    pub(crate) day: Option<NaiveDate>,
    pub(crate) status: Option<ReservationStatus>,
    pub(crate) n: i64,
    pub(crate) cents: Option<i64>,
    pub(crate) minutes: Option<i64>,
}

/// Which grouping a dashboard row belongs to (its `part` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DashboardPart {
    Period,
    Court,
    Day,
    Hour,
    Players,
    /// A part this version does not know: skipped.
    Other,
}

/// Decoded by position, without sqlx's per-row column-name lookups and type checks: a dashboard
/// miss decodes ~150 rows, and the derived decoder spent more instructions on them than the rest
/// of the request (callgrind, docs/performance.md). The statements' column types are fixed by
/// their casts and checked by the dashboard tests on both backends.
impl<'r, R> sqlx::FromRow<'r, R> for DashboardRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    &'r str: sqlx::Decode<'r, R::Database>,
    Option<&'r str>: sqlx::Decode<'r, R::Database>,
    i64: sqlx::Decode<'r, R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database>,
    Option<NaiveDate>: sqlx::Decode<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let part = match row.try_get_unchecked::<&str, _>(0)? {
            "period" => DashboardPart::Period,
            "court" => DashboardPart::Court,
            "day" => DashboardPart::Day,
            "hour" => DashboardPart::Hour,
            "players" => DashboardPart::Players,
            _ => DashboardPart::Other,
        };
        let status: Option<&str> = row.try_get_unchecked(3)?;
        Ok(Self {
            part,
            key_int: row.try_get_unchecked(1)?,
            day: row.try_get_unchecked(2)?,
            status: status.and_then(ReservationStatus::parse),
            n: row.try_get_unchecked(4)?,
            cents: row.try_get_unchecked(5)?,
            minutes: row.try_get_unchecked(6)?,
        })
    }
}

/// A busy interval of a court on a day.
#[derive(Debug, Clone, Copy, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct BusyRow {
    /// Court.
    pub court_id: i64,
    /// Start.
    pub start_time: NaiveTime,
    /// End.
    pub end_time: NaiveTime,
}

/// A club's booking rules (columns of `clubs`, migration 0005 / sqlite 0003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct BookingRules {
    /// Days ahead of the club's today a court may be booked.
    pub booking_horizon_days: i32,
    /// Live bookings a player may hold at the club at once.
    pub max_active_bookings: i32,
    /// Minutes before the start until which a player may cancel.
    pub cancellation_cutoff_minutes: i32,
}

/// A player's quota for one booking: at most `max_active` live bookings at the club, counting
/// those not over at `today` `now` (the club's wall clock).
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Live bookings allowed.
    pub max_active: i64,
    /// The club's today.
    pub today: NaiveDate,
    /// The club's time now.
    pub now: NaiveTime,
}

/// What a new reservation needs.
#[derive(Debug, Clone)]
pub struct NewReservation {
    /// Club.
    pub club_id: i64,
    /// Court.
    pub court_id: i64,
    /// Who books.
    pub created_by_id: i64,
    /// Date.
    pub date: NaiveDate,
    /// Start.
    pub start_time: NaiveTime,
    /// End.
    pub end_time: NaiveTime,
    /// Initial status.
    pub status: ReservationStatus,
    /// Price.
    pub price: Cents,
    /// Client retry key.
    pub idempotency_key: Option<String>,
}
