//! Pure domain rules: no I/O, plain data in and out, so unit and property tests reach them.

pub mod access;
pub mod booking;
pub mod dashboard;
pub mod money;
pub mod period;
pub mod schedule;
pub mod slots;

use std::fmt;

/// Lifecycle of a reservation; every status but `Cancelled` holds the court.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReservationStatus {
    /// Requested, not yet confirmed.
    Pending,
    /// Booked.
    Confirmed,
    /// Played.
    Completed,
    /// Released; does not hold the court.
    Cancelled,
    /// Booked but nobody came (still paid).
    NoShow,
}

impl ReservationStatus {
    /// Every status, in declaration order.
    pub const ALL: [ReservationStatus; 5] = [
        ReservationStatus::Pending,
        ReservationStatus::Confirmed,
        ReservationStatus::Completed,
        ReservationStatus::Cancelled,
        ReservationStatus::NoShow,
    ];

    /// The database form.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "pending",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::Completed => "completed",
            ReservationStatus::Cancelled => "cancelled",
            ReservationStatus::NoShow => "no_show",
        }
    }

    /// Parses the database form.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether a reservation in this status occupies its court.
    pub fn holds_court(self) -> bool {
        self != ReservationStatus::Cancelled
    }

    /// Whether its price counts as revenue.
    pub fn earns_revenue(self) -> bool {
        matches!(
            self,
            ReservationStatus::Confirmed | ReservationStatus::Completed | ReservationStatus::NoShow
        )
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgRole {
    /// Owns the organization.
    Owner,
    /// Administers it.
    Admin,
    /// Belongs to it; sees only the clubs they are a member of.
    Member,
}

impl OrgRole {
    /// The database form (also the key in `role_permissions`).
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }

    /// Parses the database form.
    pub fn parse(text: &str) -> Option<Self> {
        [OrgRole::Owner, OrgRole::Admin, OrgRole::Member]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// A user's role in a club.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClubRole {
    /// Runs the club.
    Manager,
    /// Works at the desk.
    Staff,
    /// Plays.
    Player,
}

impl ClubRole {
    /// The database form (also the key in `role_permissions`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClubRole::Manager => "manager",
            ClubRole::Staff => "staff",
            ClubRole::Player => "player",
        }
    }

    /// Parses the database form.
    pub fn parse(text: &str) -> Option<Self> {
        [ClubRole::Manager, ClubRole::Staff, ClubRole::Player]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// Analytics window granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One day.
    Day,
    /// The ISO week (Monday to Sunday).
    Week,
    /// The calendar month.
    Month,
    /// The calendar year.
    Year,
}
