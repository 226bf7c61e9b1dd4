//! DataLoaders: every entity reference resolves through one per-request batching loader, so a
//! list of 200 reservations costs one statement per entity kind, not 200.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use tracing::Instrument;

use crate::{
    error::StoreError,
    store::{ClubRow, CourtRow, OrganizationRow, Store, UserRow},
};

/// Key: a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);
/// Key: an organization id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrganizationId(pub i64);
/// Key: a club id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClubId(pub i64);
/// Key: a court id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CourtId(pub i64);
/// Key: all courts of a club.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CourtsOfClub(pub i64);
/// Key: all active clubs of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClubsOfOrganization(pub i64);

/// The batch loader behind every key type; it carries the request's counting store.
pub struct StoreLoader {
    store: Store,
}

impl StoreLoader {
    /// A loader over the request's store.
    pub fn new(store: Store) -> Self {
        StoreLoader { store }
    }

    /// Users whose ids are all known already: one statement, counted and traced as a batch, but
    /// without the DataLoader's batching delay (1 ms), which could gather nothing more.
    pub async fn users_now(&self, ids: &[i64]) -> Result<Vec<UserRow>, LoadError> {
        Ok(batch(&self.store, "user", ids.len(), self.store.users_by_ids(ids)).await?)
    }

    /// Courts whose ids are all known already (see [`StoreLoader::users_now`]).
    pub async fn courts_now(&self, ids: &[i64]) -> Result<Vec<CourtRow>, LoadError> {
        Ok(batch(
            &self.store,
            "court",
            ids.len(),
            self.store.courts_by_ids(ids),
        )
        .await?)
    }
}

/// The request's DataLoader (cached for the request's lifetime).
pub type Loaders =
    async_graphql::dataloader::DataLoader<StoreLoader, async_graphql::dataloader::HashMapCache>;

/// Builds the per-request DataLoader. Batches run on their own tasks, inside the span of the
/// field that started them.
pub fn loaders(store: Store) -> Loaders {
    async_graphql::dataloader::DataLoader::with_cache(
        StoreLoader::new(store.in_batch()),
        |batch| tokio::spawn(batch.instrument(tracing::Span::current())),
        async_graphql::dataloader::HashMapCache::default(),
    )
}

/// A span and a batch-size measurement around one batch.
async fn batch<T, F: std::future::Future<Output = T>>(
    store: &Store,
    entity: &'static str,
    keys: usize,
    load: F,
) -> T {
    store.record_batch(entity, keys);
    let span = tracing::debug_span!("dataloader.batch", otel.name = %format!("dataloader {entity}"), graphql.dataloader.entity = entity, graphql.dataloader.batch_size = keys);
    load.instrument(span).await
}

/// Loader errors must be `Clone`.
pub type LoadError = Arc<StoreError>;

fn ids<K: Copy>(keys: &[K], f: impl Fn(K) -> i64) -> Vec<i64> {
    keys.iter().map(|k| f(*k)).collect()
}

impl Loader<UserId> for StoreLoader {
    type Value = UserRow;
    type Error = LoadError;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, UserRow>, LoadError> {
        let rows = self.users_now(&ids(keys, |k| k.0)).await?;
        Ok(rows.into_iter().map(|r| (UserId(r.id), r)).collect())
    }
}

impl Loader<OrganizationId> for StoreLoader {
    type Value = OrganizationRow;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[OrganizationId],
    ) -> Result<HashMap<OrganizationId, OrganizationRow>, LoadError> {
        let rows = batch(
            &self.store,
            "organization",
            keys.len(),
            self.store.organizations_by_ids(&ids(keys, |k| k.0)),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (OrganizationId(r.id), r))
            .collect())
    }
}

impl Loader<ClubId> for StoreLoader {
    type Value = ClubRow;
    type Error = LoadError;

    async fn load(&self, keys: &[ClubId]) -> Result<HashMap<ClubId, ClubRow>, LoadError> {
        let rows = batch(
            &self.store,
            "club",
            keys.len(),
            self.store.clubs_by_ids(&ids(keys, |k| k.0)),
        )
        .await?;
        Ok(rows.into_iter().map(|r| (ClubId(r.id), r)).collect())
    }
}

impl Loader<CourtId> for StoreLoader {
    type Value = CourtRow;
    type Error = LoadError;

    async fn load(&self, keys: &[CourtId]) -> Result<HashMap<CourtId, CourtRow>, LoadError> {
        let rows = self.courts_now(&ids(keys, |k| k.0)).await?;
        Ok(rows.into_iter().map(|r| (CourtId(r.id), r)).collect())
    }
}

impl Loader<CourtsOfClub> for StoreLoader {
    type Value = Vec<CourtRow>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CourtsOfClub],
    ) -> Result<HashMap<CourtsOfClub, Vec<CourtRow>>, LoadError> {
        let rows = batch(
            &self.store,
            "courts_of_club",
            keys.len(),
            self.store.courts_by_clubs(&ids(keys, |k| k.0)),
        )
        .await?;
        let mut map: HashMap<CourtsOfClub, Vec<CourtRow>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            map.entry(CourtsOfClub(row.club_id)).or_default().push(row);
        }
        Ok(map)
    }
}

impl Loader<ClubsOfOrganization> for StoreLoader {
    type Value = Vec<ClubRow>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ClubsOfOrganization],
    ) -> Result<HashMap<ClubsOfOrganization, Vec<ClubRow>>, LoadError> {
        let rows = batch(
            &self.store,
            "clubs_of_organization",
            keys.len(),
            self.store.clubs_by_organizations(&ids(keys, |k| k.0)),
        )
        .await?;
        let mut map: HashMap<ClubsOfOrganization, Vec<ClubRow>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            map.entry(ClubsOfOrganization(row.organization_id))
                .or_default()
                .push(row);
        }
        Ok(map)
    }
}
