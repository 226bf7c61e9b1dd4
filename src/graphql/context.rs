//! The per-request context: the caller's credentials, the counting store, the cache, the
//! DataLoader and the access checks every resolver shares.

use std::sync::Arc;

use chrono::NaiveDate;
use tokio::sync::OnceCell;

use super::{
    facts::RequestFacts,
    loaders::{loaders, ClubId, CourtId, CourtsOfClub, LoadError, Loaders, OrganizationId, UserId},
};
use crate::{
    auth::{Credentials, Principal},
    cache::response::Requirement,
    cache::{Cache, Kind, Outcome},
    domain::access::{club_access, decide, ClubAccess, ClubScope, Decision, Viewer},
    error::{ApiError, ApiResult},
    reads,
    store::{BusyRow, ClubLayout, ClubRow, Store},
    telemetry::metrics::Instruments,
};

/// Everything a resolver may need about the request it serves.
pub struct RequestContext {
    /// The store, counting this request's statements.
    pub store: Store,
    /// The shared two-tier cache.
    pub cache: Cache,
    /// The request's DataLoader.
    pub loaders: Loaders,
    /// The request's facts: caller, operation, counters, what the answer depended on.
    pub facts: Arc<RequestFacts>,
    /// Where fields and SQL record their timings (absent in bare tests).
    pub instruments: Option<Arc<Instruments>>,
    /// The HTTP request span, to record the caller's id on once known.
    pub http_span: tracing::Span,
    credentials: Credentials,
    principal: OnceCell<Principal>,
    /// How far from a club's today dates may reach.
    pub date_window: crate::domain::period::DateWindow,
    /// Set when this context reads for a shared live topic (`graphql::live`), on behalf of no
    /// one: access is decided per subscriber from what it notes there.
    pub topic: Option<Arc<super::live::TopicNotes>>,
}

impl From<LoadError> for ApiError {
    /// A DataLoader batch failed: an unreachable database stays `SERVICE_UNAVAILABLE` (the
    /// batch ran on another task, but the cause is the same as a direct read's).
    fn from(error: LoadError) -> Self {
        match &*error {
            crate::error::StoreError::Database(cause) if crate::error::is_unavailable(cause) => {
                ApiError::ServiceUnavailable("the database is unavailable, retry later".into())
            }
            _ => ApiError::internal(anyhow::anyhow!("{error}")),
        }
    }
}

/// The club fields the access rules look at.
pub fn club_scope(club: &ClubRow) -> ClubScope {
    ClubScope {
        club_id: club.id,
        organization_id: club.organization_id,
        active: club.is_active && club.org_is_active,
    }
}

impl RequestContext {
    /// A context for one request, with fresh facts.
    pub fn new(
        store: &Store,
        cache: &Cache,
        credentials: Credentials,
        instruments: Option<Arc<Instruments>>,
        n_plus_one_threshold: u32,
    ) -> Self {
        let facts = Arc::new(RequestFacts::new(n_plus_one_threshold));
        Self::with_facts(store, cache, credentials, instruments, facts)
    }

    /// A context for one request whose facts the caller (the pipeline) already holds.
    pub fn with_facts(
        store: &Store,
        cache: &Cache,
        credentials: Credentials,
        instruments: Option<Arc<Instruments>>,
        facts: Arc<RequestFacts>,
    ) -> Self {
        let store = store.for_request(facts.clone());
        RequestContext {
            instruments,
            http_span: tracing::Span::current(),
            loaders: loaders(store.clone()),
            store,
            cache: cache.clone(),
            facts,
            credentials,
            principal: OnceCell::new(),
            date_window: Default::default(),
            topic: None,
        }
    }

    /// A context like this one for one event of a live subscription: the same caller, store,
    /// cache and date window, with fresh facts, DataLoaders and principal (read again, so a
    /// revoked membership or a deactivated user is seen).
    pub fn for_event(&self) -> RequestContext {
        let facts = Arc::new(self.facts.fresh());
        let mut context = RequestContext::with_facts(
            &self.store,
            &self.cache,
            self.credentials.clone(),
            self.instruments.clone(),
            facts,
        )
        .with_date_window(self.date_window);
        context.topic = self.topic.clone();
        context
    }

    /// Makes this a shared topic's context: it reads on behalf of no one and notes, in
    /// `notes`, what each subscriber's access is decided on.
    pub fn for_topic(mut self, notes: Arc<super::live::TopicNotes>) -> RequestContext {
        self.topic = Some(notes);
        self
    }

    /// The caller's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sets how far from a club's today dates may reach (`limits.date_days_*`).
    pub fn with_date_window(mut self, window: crate::domain::period::DateWindow) -> Self {
        self.date_window = window;
        self
    }

    /// `BAD_USER_INPUT` for a date outside the window around the club's today.
    pub fn check_date(&self, club: &ClubRow, date: NaiveDate) -> ApiResult<()> {
        self.date_window
            .check(date, self.today_at(club))
            .map_err(ApiError::bad_input)
    }

    /// Notes where a cached value of this request came from.
    pub fn trace(&self, kind: Kind, outcome: Outcome) {
        self.facts.record_cache(kind.name(), outcome);
    }

    /// The signed-in caller, loaded once per request; UNAUTHENTICATED without a valid token or
    /// for an unknown or inactive user.
    pub async fn principal(&self) -> ApiResult<&Principal> {
        if let Some(notes) = &self.topic {
            // A shared topic has no caller: a field that depends on one makes it personal.
            notes.make_personal();
            return Err(ApiError::Forbidden(
                "this selection depends on the caller".into(),
            ));
        }
        self.principal
            .get_or_try_init(|| async {
                let (principal, outcome) =
                    crate::auth::principal(&self.cache, &self.store, &self.credentials).await;
                if let Some(outcome) = outcome {
                    self.trace(Kind::AuthContext, outcome);
                }
                let principal = principal?;
                self.facts
                    .set_user(principal.user.id, principal.user.is_superuser);
                self.http_span.record("user.id", principal.user.id);
                self.loaders
                    .feed_many(
                        principal
                            .organizations
                            .iter()
                            .map(|(o, _)| (OrganizationId(o.id), o.clone())),
                    )
                    .await;
                self.loaders
                    .feed_one(UserId(principal.user.id), principal.user.clone())
                    .await;
                Ok(principal)
            })
            .await
    }

    /// The caller reloaded from the database, for mutations that just changed them.
    pub async fn reload_principal(&self) -> ApiResult<Principal> {
        let user_id = self.principal().await?.user.id;
        match self.store.principal(user_id).await? {
            Some(record) if record.user.is_active => Ok(Principal::from(record)),
            _ => Err(ApiError::Unauthenticated("unknown or inactive user".into())),
        }
    }

    /// A club the caller may use at `needed` level: NOT_FOUND when invisible (or unknown),
    /// FORBIDDEN when visible but below the level.
    pub async fn club(&self, club_id: i64, needed: ClubAccess) -> ApiResult<(ClubRow, Granted)> {
        let (layout, access) = self.club_layout(club_id, needed).await?;
        Ok((layout.club, access))
    }

    /// A club with its courts and schedule (cached), after the same access check as
    /// [`RequestContext::club`]; its entities are shared with the DataLoader.
    pub async fn club_layout(
        &self,
        club_id: i64,
        needed: ClubAccess,
    ) -> ApiResult<(ClubLayout, Granted)> {
        let (layout, access, _) = self.club_layout_reading(club_id, needed, None).await?;
        Ok((layout, access))
    }

    /// [`RequestContext::club_layout`] before reading the club's slots on `day`: with the day's
    /// busy intervals too when nothing would cache them (`reads::club_layout_for_day`). They are
    /// returned only after the access check.
    pub async fn club_layout_for_day(
        &self,
        club_id: i64,
        needed: ClubAccess,
        day: NaiveDate,
    ) -> ApiResult<(ClubLayout, Granted, Option<Vec<BusyRow>>)> {
        self.club_layout_reading(club_id, needed, Some(day)).await
    }

    async fn club_layout_reading(
        &self,
        club_id: i64,
        needed: ClubAccess,
        day: Option<NaiveDate>,
    ) -> ApiResult<(ClubLayout, Granted, Option<Vec<BusyRow>>)> {
        // The caller first: an anonymous or unknown one reads nothing.
        let principal = match &self.topic {
            Some(_) => None,
            None => Some(self.principal().await?),
        };
        let (layout, busy, outcome) = match day {
            Some(day) => reads::club_layout_for_day(&self.cache, &self.store, club_id, day).await?,
            None => {
                let (layout, outcome) =
                    reads::club_layout(&self.cache, &self.store, club_id).await?;
                (layout, None, outcome)
            }
        };
        self.trace(Kind::Club, outcome);
        let scope = club_scope(&layout.club);
        let access = if let (Some(notes), None) = (&self.topic, principal) {
            // Read for everyone: each subscriber's access is decided on delivery.
            notes.note_club(scope, needed);
            Granted {
                facts: self.facts.clone(),
                scope,
                access: needed,
            }
        } else {
            let principal = principal.expect("a context without a topic has a principal");
            let access = club_access(&principal.viewer, scope);
            let decision = decide(access, needed);
            self.facts.require(Requirement::Club {
                scope,
                needed,
                decision,
            });
            match (decision, access) {
                (Decision::Granted, Some(access)) => Granted {
                    facts: self.facts.clone(),
                    scope,
                    access,
                },
                (Decision::Below, _) => {
                    return Err(ApiError::Forbidden(
                        "your role in this club does not allow this".into(),
                    ))
                }
                _ => return Err(ApiError::not_found("club")),
            }
        };
        self.loaders
            .feed_one(ClubId(club_id), layout.club.clone())
            .await;
        self.loaders
            .feed_one(
                OrganizationId(layout.club.organization_id),
                layout.club.organization(),
            )
            .await;
        self.loaders
            .feed_one(CourtsOfClub(club_id), layout.courts.clone())
            .await;
        self.loaders
            .feed_many(layout.courts.iter().map(|c| (CourtId(c.id), c.clone())))
            .await;
        Ok((layout, access, busy))
    }

    /// Today's date in the club's time zone (UTC when the zone is unknown); the answer then
    /// depends on the date, so a cached whole response re-checks it.
    pub fn today_at(&self, club: &ClubRow) -> NaiveDate {
        let date = reads::today_at(&club.timezone);
        self.facts.require(Requirement::Today {
            timezone: club.timezone.clone(),
            date,
        });
        date
    }

    /// Whether the caller sees a club; the decision is noted, so a cached answer is served
    /// again only to callers who would get the same one.
    pub fn can_see(&self, viewer: &Viewer, club: &ClubRow) -> bool {
        let scope = club_scope(club);
        let decision = decide(club_access(viewer, scope), ClubAccess::Player);
        self.facts.require(Requirement::Club {
            scope,
            needed: ClubAccess::Player,
            decision,
        });
        decision == Decision::Granted
    }
}

/// The caller's access to a club that passed a check. The level itself stays private: every
/// question asked of it ([`Granted::at_least`]) is noted as a decision, so a cached answer is
/// served only to callers for whom every question gets the same answer.
#[derive(Debug, Clone)]
pub struct Granted {
    facts: Arc<RequestFacts>,
    scope: ClubScope,
    access: ClubAccess,
}

impl Granted {
    /// Whether the caller's access reaches `level` (noted).
    pub fn at_least(&self, level: ClubAccess) -> bool {
        let holds = self.access >= level;
        self.facts.require(Requirement::Club {
            scope: self.scope,
            needed: level,
            decision: if holds {
                Decision::Granted
            } else {
                Decision::Below
            },
        });
        holds
    }
}

/// Parses a GraphQL `ID` as a positive integer id; anything else is BAD_USER_INPUT.
pub fn parse_id(id: &async_graphql::ID, what: &str) -> ApiResult<i64> {
    id.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        // Echo short values only: hostile megabyte ids stay out of responses and logs.
        let shown: String = id.as_str().chars().take(32).collect();
        let ellipsis = if id.as_str().chars().count() > 32 {
            "…"
        } else {
            ""
        };
        ApiError::bad_input(format!("`{shown}{ellipsis}` is not a valid {what} id"))
    })
}

/// The request context of a resolver.
pub fn request<'a>(ctx: &async_graphql::Context<'a>) -> &'a RequestContext {
    ctx.data_unchecked::<RequestContext>()
}
