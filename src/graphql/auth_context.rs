//! `authContext`: profile, current organization, memberships and permissions in one query,
//! replacing four REST calls; and `switchOrganization`.

use async_graphql::{Context, Object, SimpleObject, ID};

use super::{
    context::{parse_id, request},
    loaders::{ClubId, OrganizationId},
    types::{Club, ClubRole, OrgRole, Organization, User},
};
use crate::{
    auth::Principal,
    cache::{tags, Kind},
    domain::{access::roles_in_organization, ClubRole as DomainClubRole},
    error::{ApiError, ApiResult},
    reads,
};

/// The signed-in user's context.
pub struct AuthContext(pub Principal);

/// Membership of an organization.
#[derive(SimpleObject)]
pub struct OrganizationMembership {
    organization: Organization,
    role: OrgRole,
}

/// Membership of a club.
#[derive(SimpleObject)]
pub struct ClubMembership {
    club: Club,
    role: ClubRole,
}

impl AuthContext {
    /// The organization the caller works in: their stored choice when still a member (any
    /// active organization for a superuser), else their first organization by name.
    fn current_organization_id(&self) -> Option<i64> {
        let principal = &self.0;
        let stored = principal.user.current_organization_id;
        let is_member = |id: i64| principal.organizations.iter().any(|(o, _)| o.id == id);
        match stored {
            Some(id) if is_member(id) || principal.user.is_superuser => Some(id),
            _ => principal.organizations.first().map(|(o, _)| o.id),
        }
    }
}

#[Object]
impl AuthContext {
    async fn user(&self) -> User {
        User(self.0.user.clone())
    }

    /// Null when the caller belongs to no organization.
    async fn current_organization(&self, ctx: &Context<'_>) -> ApiResult<Option<Organization>> {
        let Some(id) = self.current_organization_id() else {
            return Ok(None);
        };
        let org = request(ctx).loaders.load_one(OrganizationId(id)).await?;
        Ok(org
            .filter(|o| o.is_active || self.0.user.is_superuser)
            .map(Organization))
    }

    /// Active memberships of active organizations, by organization name.
    #[graphql(complexity = "10 * child_complexity")]
    async fn organizations(&self) -> Vec<OrganizationMembership> {
        self.0
            .organizations
            .iter()
            .map(|(org, role)| OrganizationMembership {
                organization: Organization(org.clone()),
                role: (*role).into(),
            })
            .collect()
    }

    /// Active memberships of active clubs, by club name.
    #[graphql(complexity = "10 * child_complexity")]
    async fn clubs(&self, ctx: &Context<'_>) -> ApiResult<Vec<ClubMembership>> {
        let roles: Vec<(i64, DomainClubRole)> = self
            .0
            .viewer
            .club_roles
            .iter()
            .map(|(c, _, r)| (*c, *r))
            .collect();
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let request = request(ctx);
        let (rows, outcome) = reads::member_clubs(
            &request.cache,
            &request.store,
            self.0.user.id,
            roles.iter().map(|(c, _)| *c).collect(),
        )
        .await?;
        request.trace(Kind::AuthContext, outcome);
        request
            .loaders
            .feed_many(rows.iter().map(|c| (ClubId(c.id), c.clone())))
            .await;
        let clubs: std::collections::HashMap<i64, &crate::store::ClubRow> =
            rows.iter().map(|c| (c.id, c)).collect();
        let mut memberships: Vec<ClubMembership> = roles
            .into_iter()
            .filter_map(|(id, role)| {
                clubs.get(&id).map(|c| ClubMembership {
                    club: Club((*c).clone()),
                    role: role.into(),
                })
            })
            .collect();
        memberships.sort_by(|a, b| {
            a.club
                .0
                .name
                .cmp(&b.club.0.name)
                .then(a.club.0.id.cmp(&b.club.0.id))
        });
        Ok(memberships)
    }

    /// Sorted, de-duplicated permissions of the caller's roles in the current organization.
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        let roles = roles_in_organization(&self.0.viewer, self.current_organization_id());
        if roles.is_empty() && !self.0.user.is_superuser {
            return Ok(Vec::new());
        }
        let request = request(ctx);
        let (permissions, outcome) =
            reads::permission_list(&request.cache, &request.store, &self.0.viewer, &roles).await?;
        request.trace(Kind::Permissions, outcome);
        Ok(permissions)
    }
}

/// Queries of the auth domain.
#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The signed-in user's profile, organizations, clubs and permissions.
    async fn auth_context(&self, ctx: &Context<'_>) -> ApiResult<AuthContext> {
        Ok(AuthContext(request(ctx).principal().await?.clone()))
    }
}

/// Mutations of the auth domain.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Makes another organization the caller's current one. NOT_FOUND unless the caller is an
    /// active member of that active organization (superusers may pick any).
    async fn switch_organization(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
    ) -> ApiResult<AuthContext> {
        let request = request(ctx);
        let principal = request.principal().await?;
        let org_id = parse_id(&organization_id, "organization")?;
        let allowed = if principal.user.is_superuser {
            request
                .loaders
                .load_one(OrganizationId(org_id))
                .await?
                .is_some()
        } else {
            principal.organizations.iter().any(|(o, _)| o.id == org_id)
        };
        if !allowed {
            return Err(ApiError::not_found("organization"));
        }
        request
            .store
            .set_current_organization(principal.user.id, org_id)
            .await?;
        request
            .cache
            .invalidate(&[tags::user(principal.user.id)])
            .await;
        Ok(AuthContext(request.reload_principal().await?))
    }
}
