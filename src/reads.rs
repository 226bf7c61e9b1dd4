//! Cached reads: the data of the hot operations, loaded from the store through the two-tier
//! cache. Resolvers call these (and check access on every call, hits included); the warm-up
//! calls them too. Keys carry what the value depends on; tags say what invalidates it.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{
    cache::{tags, Cache, CacheKey, Kind, Outcome},
    domain::{
        access::{permissions, Viewer},
        dashboard::{self, DashboardInput, DashboardStats},
        period::{period_range, previous_range},
        schedule::{minute_of, WeeklySchedule},
        slots::{court_slots, slot_bounds, Slot},
        Period,
    },
    error::{ApiError, ApiResult},
    store::{BusyRow, ClubLayout, ClubRow, PrincipalRecord, Store},
};

/// The slots of one court.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CourtSlotsValue {
    /// The court.
    pub court_id: i64,
    /// Its slots, in order.
    pub slots: Vec<Slot>,
}

/// A user with their active memberships (`authContext` kind). Unknown users are not cached.
pub async fn principal(
    cache: &Cache,
    store: &Store,
    user_id: i64,
) -> ApiResult<(PrincipalRecord, Outcome)> {
    let store = store.clone();
    cache
        .get_or_load(
            CacheKey::new(Kind::AuthContext, &[("user", &user_id)], ""),
            vec![tags::user(user_id)],
            move || async move {
                store
                    .principal(user_id)
                    .await?
                    .ok_or_else(|| ApiError::Unauthenticated("unknown or inactive user".into()))
            },
        )
        .await
}

/// The clubs of a user's club memberships, in one entry per user (`authContext` kind, keyed by the
/// user and the club ids, tagged with the user and every one of the clubs): a membership change
/// bumps the user's tag, a renamed or deactivated club its own, so `authContext { clubs { club
/// { … } } }` is answered from the cache and its whole response can be stored. A miss is one
/// statement for all the clubs.
pub async fn member_clubs(
    cache: &Cache,
    store: &Store,
    user_id: i64,
    club_ids: Vec<i64>,
) -> ApiResult<(Vec<ClubRow>, Outcome)> {
    let store = store.clone();
    let listed = club_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut tags_of = vec![tags::user(user_id)];
    tags_of.extend(club_ids.iter().map(|id| tags::club(*id)));
    cache
        .get_or_load(
            CacheKey::new(
                Kind::AuthContext,
                &[("user", &user_id)],
                &format!("clubs:{listed}"),
            ),
            tags_of,
            move || async move { Ok::<_, ApiError>(store.clubs_by_ids(&club_ids).await?) },
        )
        .await
}

/// A club with its organization, courts and schedule (`club` kind). Unknown clubs are not cached.
pub async fn club_layout(
    cache: &Cache,
    store: &Store,
    club_id: i64,
) -> ApiResult<(ClubLayout, Outcome)> {
    let store = store.clone();
    cache
        .get_or_load(
            CacheKey::new(Kind::Club, &[("club", &club_id)], ""),
            vec![tags::club(club_id)],
            move || async move {
                store
                    .club_layout(club_id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("club"))
            },
        )
        .await
}

/// [`club_layout`], and the day's busy intervals read in the same statement when neither the
/// layout nor the day's slots would be kept (every cache off, or both kinds' windows `0s`): a
/// grid is then one statement instead of two. Otherwise `None`, and [`availability`] reads (or
/// finds cached) the day itself. On the combined path nothing is stored, so the rows read with
/// the layout are exactly as fresh as [`availability`]'s own read; its key and tags still name
/// the date, so a value could never stand for another day's.
pub async fn club_layout_for_day(
    cache: &Cache,
    store: &Store,
    club_id: i64,
    date: NaiveDate,
) -> ApiResult<(ClubLayout, Option<Vec<BusyRow>>, Outcome)> {
    if cache.keeps(Kind::Club) || cache.keeps(Kind::CourtAvailability) {
        let (layout, outcome) = club_layout(cache, store, club_id).await?;
        return Ok((layout, None, outcome));
    }
    let store = store.clone();
    let ((layout, busy), outcome) = cache
        .get_or_load(
            CacheKey::new(Kind::Club, &[("club", &club_id), ("date", &date)], "day"),
            vec![tags::club(club_id), tags::club_slots(club_id, date)],
            move || async move {
                store
                    .club_day(club_id, date)
                    .await?
                    .ok_or_else(|| ApiError::not_found("club"))
            },
        )
        .await?;
    Ok((layout, Some(busy), outcome))
}

/// The club's weekly schedule.
pub fn schedule_of(layout: &ClubLayout) -> WeeklySchedule {
    WeeklySchedule::from_rows(
        layout
            .schedule
            .iter()
            .map(|(d, o, c)| (*d, minute_of(*o), minute_of(*c))),
    )
}

/// Slots of the given active courts (all active courts with `None`) on a date
/// (`courtAvailability` kind, keyed by club, date, court set and slot size); `busy` are the day's
/// intervals when [`club_layout_for_day`] read them already.
pub async fn availability(
    cache: &Cache,
    store: &Store,
    layout: &ClubLayout,
    date: NaiveDate,
    court_ids: Option<&[i64]>,
    slot_minutes: u32,
    busy: Option<Vec<BusyRow>>,
) -> ApiResult<(Vec<CourtSlotsValue>, Outcome)> {
    let club_id = layout.club.id;
    let courts: Vec<(i64, bool)> = layout
        .courts
        .iter()
        .filter(|c| c.is_active && court_ids.is_none_or(|ids| ids.contains(&c.id)))
        .map(|c| (c.id, c.is_maintenance))
        .collect();
    let court_set = match court_ids {
        None => "all".to_string(),
        Some(_) => courts
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    let key = CacheKey::new(
        Kind::CourtAvailability,
        &[("club", &club_id), ("date", &date)],
        &format!("courts={court_set};slot={slot_minutes}"),
    );
    let bounds = slot_bounds(schedule_of(layout).intervals(date), slot_minutes);
    let store = store.clone();
    cache
        .get_or_load(
            key,
            vec![tags::club(club_id), tags::club_slots(club_id, date)],
            move || async move {
                let mut by_court: HashMap<i64, Vec<(u32, u32)>> = HashMap::new();
                if !bounds.is_empty() && !courts.is_empty() {
                    let rows = match busy {
                        Some(rows) => rows,
                        None => store.busy_intervals(club_id, date).await?,
                    };
                    for row in rows {
                        by_court
                            .entry(row.court_id)
                            .or_default()
                            .push((minute_of(row.start_time), minute_of(row.end_time)));
                    }
                }
                Ok::<_, ApiError>(
                    courts
                        .into_iter()
                        .map(|(court_id, in_maintenance)| CourtSlotsValue {
                            court_id,
                            slots: court_slots(
                                &bounds,
                                by_court.get(&court_id).map(Vec::as_slice).unwrap_or(&[]),
                                in_maintenance,
                            ),
                        })
                        .collect(),
                )
            },
        )
        .await
}

/// A club's dashboard for the period of kind `period` holding `anchor` (`dashboard` kind).
pub async fn dashboard(
    cache: &Cache,
    store: &Store,
    layout: &ClubLayout,
    period: Period,
    anchor: NaiveDate,
) -> ApiResult<(DashboardStats, Outcome)> {
    let club_id = layout.club.id;
    let current = period_range(period, anchor);
    let previous = previous_range(period, anchor);
    let key = CacheKey::new(
        Kind::Dashboard,
        &[
            ("club", &club_id),
            ("period", &format!("{period:?}")),
            ("date", &current.from),
        ],
        "",
    );
    let tags = vec![
        tags::club(club_id),
        tags::club_period(club_id, period, current.from),
        tags::club_period(club_id, period, previous.from),
    ];
    let schedule = schedule_of(layout);
    let active: Vec<i64> = layout
        .courts
        .iter()
        .filter(|c| c.is_active)
        .map(|c| c.id)
        .collect();
    let store = store.clone();
    cache
        .get_or_load(key, tags, move || async move {
            let rows = store
                .dashboard_aggregates(club_id, period, current, previous)
                .await?;
            Ok::<_, ApiError>(dashboard::compute(
                &DashboardInput {
                    schedule: &schedule,
                    active_court_ids: &active,
                    current,
                    previous,
                },
                &rows,
            ))
        })
        .await
}

/// The permission list of a role set (`permissions` kind).
pub async fn permission_list(
    cache: &Cache,
    store: &Store,
    viewer: &Viewer,
    roles: &std::collections::BTreeSet<&'static str>,
) -> ApiResult<(Vec<String>, Outcome)> {
    let role_set = if viewer.is_superuser {
        "*".to_string()
    } else {
        roles.iter().copied().collect::<Vec<_>>().join(",")
    };
    let roles: std::collections::BTreeSet<&'static str> = roles.clone();
    let superuser = viewer.is_superuser;
    let store = store.clone();
    cache
        .get_or_load(
            CacheKey::new(Kind::Permissions, &[("roles", &role_set)], ""),
            vec![tags::ROLE_PERMISSIONS.to_string()],
            move || async move {
                let table = store.role_permissions().await?;
                Ok::<_, ApiError>(permissions(&table, &roles, superuser))
            },
        )
        .await
}

/// Fills availability for the next `days` days (90-minute slots, every court) and the current
/// DAY/WEEK/MONTH dashboards of the given (or every active) club, `concurrency` loads at a time.
pub async fn warm_up(
    cache: &Cache,
    store: &Store,
    club_ids: Option<Vec<i64>>,
    days: u32,
    concurrency: usize,
) -> ApiResult<usize> {
    let club_ids = match club_ids {
        Some(ids) => ids,
        None => store.active_club_ids().await?,
    };
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for club_id in club_ids {
        let (cache, store, semaphore) = (cache.clone(), store.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            let (layout, _) = club_layout(&cache, &store, club_id).await?;
            let today = today_at(&layout.club.timezone);
            let mut filled = 1;
            for offset in 0..days {
                let date = today + chrono::Days::new(u64::from(offset));
                availability(&cache, &store, &layout, date, None, 90, None).await?;
                filled += 1;
            }
            for period in [Period::Day, Period::Week, Period::Month] {
                dashboard(&cache, &store, &layout, period, today).await?;
                filled += 1;
            }
            Ok::<usize, ApiError>(filled)
        });
    }
    let mut filled = 0;
    while let Some(result) = tasks.join_next().await {
        filled += result.map_err(ApiError::internal)??;
    }
    Ok(filled)
}

/// Today's date in an IANA time zone (UTC when unknown).
pub fn today_at(timezone: &str) -> NaiveDate {
    let now = chrono::Utc::now();
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => now.with_timezone(&tz).date_naive(),
        Err(_) => now.date_naive(),
    }
}
