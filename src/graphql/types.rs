//! The entity types of the schema; every reference to another entity goes through the DataLoader.

use async_graphql::{Context, Enum, Object, ID};

use super::{
    context::request,
    loaders::{ClubId, ClubsOfOrganization, CourtId, CourtsOfClub, UserId},
    scalars::{Date, DateTime, Decimal, LocalTime},
};
use crate::{
    domain::{self, money::Cents},
    error::{ApiError, ApiResult},
    store::{ClubRow, CourtRow, OrganizationRow, ReservationRow, UserRow},
};

/// Analytics window.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "domain::Period")]
pub enum Period {
    /// The given date.
    Day,
    /// The ISO week (Monday–Sunday) holding the date.
    Week,
    /// The calendar month holding the date.
    Month,
    /// The calendar year holding the date.
    Year,
}

/// Reservation lifecycle.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "domain::ReservationStatus")]
pub enum ReservationStatus {
    /// Requested, not yet confirmed.
    Pending,
    /// Booked.
    Confirmed,
    /// Played.
    Completed,
    /// Released; does not hold the court.
    Cancelled,
    /// Booked but nobody came.
    NoShow,
}

/// Role in an organization.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "domain::OrgRole")]
pub enum OrgRole {
    /// Owner.
    Owner,
    /// Administrator.
    Admin,
    /// Member.
    Member,
}

/// Role in a club.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "domain::ClubRole")]
pub enum ClubRole {
    /// Manager.
    Manager,
    /// Staff.
    Staff,
    /// Player.
    Player,
}

fn missing(what: &str) -> ApiError {
    ApiError::internal(anyhow::anyhow!("dangling reference to {what}"))
}

/// A person using the platform.
pub struct User(pub UserRow);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn full_name(&self) -> &str {
        &self.0.full_name
    }
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }
    async fn last_login_at(&self) -> Option<DateTime> {
        self.0.last_login_at.map(DateTime)
    }
}

/// A company running one or more clubs.
pub struct Organization(pub OrganizationRow);

#[Object]
impl Organization {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// The organization's active clubs that the caller can see.
    #[graphql(complexity = "10 * child_complexity")]
    async fn clubs(&self, ctx: &Context<'_>) -> ApiResult<Vec<Club>> {
        let request = request(ctx);
        let viewer = &request.principal().await?.viewer;
        let clubs = request
            .loaders
            .load_one(ClubsOfOrganization(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(clubs
            .into_iter()
            .filter(|c| request.can_see(viewer, c))
            .map(Club)
            .collect())
    }
}

/// A padel club.
#[derive(Clone, PartialEq)]
pub struct Club(pub ClubRow);

#[Object]
impl Club {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// IANA time zone of the club's dates and times.
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }
    async fn organization(&self) -> Organization {
        Organization(self.0.organization())
    }
    /// Active courts (also retired ones with `includeInactive`), by id.
    #[graphql(complexity = "10 * child_complexity")]
    async fn courts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_inactive: bool,
    ) -> ApiResult<Vec<Court>> {
        let courts = request(ctx)
            .loaders
            .load_one(CourtsOfClub(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(courts
            .into_iter()
            .filter(|c| include_inactive || c.is_active)
            .map(Court)
            .collect())
    }
}

/// A bookable court.
#[derive(Clone, PartialEq)]
pub struct Court(pub CourtRow);

#[Object]
impl Court {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn surface(&self) -> &str {
        &self.0.surface
    }
    async fn indoor(&self) -> bool {
        self.0.is_indoor
    }
    async fn active(&self) -> bool {
        self.0.is_active
    }
    async fn in_maintenance(&self) -> bool {
        self.0.is_maintenance
    }
    async fn price_per_hour(&self) -> Decimal {
        Decimal(self.0.price_per_hour())
    }
    async fn club(&self, ctx: &Context<'_>) -> ApiResult<Club> {
        let club = request(ctx)
            .loaders
            .load_one(ClubId(self.0.club_id))
            .await?
            .ok_or_else(|| missing("club"))?;
        Ok(Club(club))
    }
}

/// A booking of one court for a time on a date.
pub struct Reservation(pub ReservationRow);

#[Object]
impl Reservation {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn club(&self, ctx: &Context<'_>) -> ApiResult<Club> {
        let club = request(ctx)
            .loaders
            .load_one(ClubId(self.0.club_id))
            .await?
            .ok_or_else(|| missing("club"))?;
        Ok(Club(club))
    }
    async fn court(&self, ctx: &Context<'_>) -> ApiResult<Court> {
        let court = request(ctx)
            .loaders
            .load_one(CourtId(self.0.court_id))
            .await?
            .ok_or_else(|| missing("court"))?;
        Ok(Court(court))
    }
    async fn date(&self) -> Date {
        Date(self.0.date)
    }
    async fn start(&self) -> LocalTime {
        LocalTime(self.0.start_time)
    }
    async fn end(&self) -> LocalTime {
        LocalTime(self.0.end_time)
    }
    async fn status(&self) -> ReservationStatus {
        self.0.status().into()
    }
    async fn price(&self) -> Decimal {
        Decimal(Cents(self.0.price_cents))
    }
    async fn created_by(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let user = request(ctx)
            .loaders
            .load_one(UserId(self.0.created_by_id))
            .await?
            .ok_or_else(|| missing("user"))?;
        Ok(User(user))
    }
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// Last change (creation or cancellation).
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
}
