//! Who may see and do what: club visibility, access levels and the permission list.

use std::collections::BTreeSet;

use super::{ClubRole, OrgRole};

/// The caller as the access rules see them: flags and active memberships only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The user's id.
    pub user_id: i64,
    /// Sees every club and holds every permission.
    pub is_superuser: bool,
    /// Active memberships of active organizations: (organization id, role).
    pub org_roles: Vec<(i64, OrgRole)>,
    /// Active memberships of active clubs: (club id, the club's organization id, role).
    pub club_roles: Vec<(i64, i64, ClubRole)>,
}

/// What the access rules need to know about a club.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClubScope {
    /// The club.
    pub club_id: i64,
    /// Its organization.
    pub organization_id: i64,
    /// The club and its organization are both active.
    pub active: bool,
}

/// How much of a club the caller may use; `None` from [`club_access`] means invisible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClubAccess {
    /// Sees the club, books, sees and cancels their own reservations.
    Player,
    /// Also sees and cancels every reservation.
    Staff,
    /// Also reads dashboards and sets courts in maintenance (club manager, org owner/admin,
    /// superuser).
    Manager,
}

impl Viewer {
    /// The caller's role in an organization, when an active member.
    pub fn org_role(&self, organization_id: i64) -> Option<OrgRole> {
        self.org_roles
            .iter()
            .find(|(org, _)| *org == organization_id)
            .map(|(_, role)| *role)
    }
}

/// The caller's access to a club: superusers see everything; an active owner/admin of the club's
/// organization manages it; an active club member has the level of their club role. Inactive
/// clubs (or clubs of inactive organizations) are visible to superusers only.
pub fn club_access(viewer: &Viewer, club: ClubScope) -> Option<ClubAccess> {
    if viewer.is_superuser {
        return Some(ClubAccess::Manager);
    }
    if !club.active {
        return None;
    }
    let from_org = match viewer.org_role(club.organization_id) {
        Some(OrgRole::Owner | OrgRole::Admin) => Some(ClubAccess::Manager),
        _ => None,
    };
    let from_club = viewer
        .club_roles
        .iter()
        .filter(|(club_id, _, _)| *club_id == club.club_id)
        .map(|(_, _, role)| match role {
            ClubRole::Manager => ClubAccess::Manager,
            ClubRole::Staff => ClubAccess::Staff,
            ClubRole::Player => ClubAccess::Player,
        })
        .max();
    from_org.max(from_club)
}

/// The outcome of asking whether a caller may use a club at a level. Answers shared between
/// callers are re-checked by decision, not by level: a player and a manager who both may see a
/// club's availability get the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The club is invisible to the caller (NOT_FOUND).
    Invisible,
    /// Visible, but below the level (FORBIDDEN).
    Below,
    /// At or above the level.
    Granted,
}

/// The decision of `club_access`'s answer for a needed level.
pub fn decide(access: Option<ClubAccess>, needed: ClubAccess) -> Decision {
    match access {
        None => Decision::Invisible,
        Some(access) if access < needed => Decision::Below,
        Some(_) => Decision::Granted,
    }
}

/// The roles whose permissions the caller holds in `organization_id`: their organization role
/// there and their club roles in that organization's clubs.
pub fn roles_in_organization(
    viewer: &Viewer,
    organization_id: Option<i64>,
) -> BTreeSet<&'static str> {
    let Some(org) = organization_id else {
        return BTreeSet::new();
    };
    let mut roles: BTreeSet<&'static str> = viewer
        .org_role(org)
        .map(OrgRole::as_str)
        .into_iter()
        .collect();
    roles.extend(
        viewer
            .club_roles
            .iter()
            .filter(|(_, club_org, _)| *club_org == org)
            .map(|(_, _, role)| role.as_str()),
    );
    roles
}

/// The permission list: the sorted, de-duplicated union of the permissions of `roles` in the
/// `(role, permission)` table; a superuser holds every permission of the table.
pub fn permissions(
    table: &[(String, String)],
    roles: &BTreeSet<&str>,
    is_superuser: bool,
) -> Vec<String> {
    table
        .iter()
        .filter(|(role, _)| is_superuser || roles.contains(role.as_str()))
        .map(|(_, permission)| permission.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn club(club_id: i64, organization_id: i64) -> ClubScope {
        ClubScope {
            club_id,
            organization_id,
            active: true,
        }
    }

    #[test]
    fn org_owner_and_admin_manage_every_club_of_their_organization_only() {
        let owner = Viewer {
            user_id: 1,
            org_roles: vec![(10, OrgRole::Owner)],
            ..Default::default()
        };
        assert_eq!(club_access(&owner, club(1, 10)), Some(ClubAccess::Manager));
        assert_eq!(club_access(&owner, club(2, 20)), None);
        let member = Viewer {
            user_id: 2,
            org_roles: vec![(10, OrgRole::Member)],
            ..Default::default()
        };
        assert_eq!(club_access(&member, club(1, 10)), None);
    }

    #[test]
    fn club_roles_give_their_level_and_the_highest_wins() {
        let v = Viewer {
            user_id: 3,
            org_roles: vec![(10, OrgRole::Member)],
            club_roles: vec![
                (1, 10, ClubRole::Player),
                (1, 10, ClubRole::Staff),
                (2, 10, ClubRole::Player),
            ],
            ..Default::default()
        };
        assert_eq!(club_access(&v, club(1, 10)), Some(ClubAccess::Staff));
        assert_eq!(club_access(&v, club(2, 10)), Some(ClubAccess::Player));
        assert_eq!(club_access(&v, club(3, 10)), None);
    }

    #[test]
    fn decisions_depend_on_the_level_asked_not_on_the_level_held() {
        assert_eq!(decide(None, ClubAccess::Player), Decision::Invisible);
        assert_eq!(
            decide(Some(ClubAccess::Staff), ClubAccess::Manager),
            Decision::Below
        );
        assert_eq!(
            decide(Some(ClubAccess::Staff), ClubAccess::Player),
            Decision::Granted
        );
        assert_eq!(
            decide(Some(ClubAccess::Manager), ClubAccess::Player),
            Decision::Granted
        );
    }

    #[test]
    fn inactive_clubs_are_seen_by_superusers_only() {
        let manager = Viewer {
            user_id: 4,
            club_roles: vec![(1, 10, ClubRole::Manager)],
            ..Default::default()
        };
        let closed = ClubScope {
            active: false,
            ..club(1, 10)
        };
        assert_eq!(club_access(&manager, closed), None);
        let root = Viewer {
            user_id: 5,
            is_superuser: true,
            ..Default::default()
        };
        assert_eq!(club_access(&root, closed), Some(ClubAccess::Manager));
    }

    #[test]
    fn permissions_are_the_sorted_union_of_the_roles_in_the_current_organization() {
        let table: Vec<(String, String)> = [
            ("owner", "b"),
            ("owner", "a"),
            ("staff", "a"),
            ("staff", "c"),
            ("player", "d"),
        ]
        .iter()
        .map(|(r, p)| (r.to_string(), p.to_string()))
        .collect();
        let v = Viewer {
            user_id: 6,
            org_roles: vec![(10, OrgRole::Owner), (20, OrgRole::Member)],
            club_roles: vec![(1, 10, ClubRole::Staff), (7, 20, ClubRole::Player)],
            ..Default::default()
        };
        let roles = roles_in_organization(&v, Some(10));
        assert_eq!(permissions(&table, &roles, false), vec!["a", "b", "c"]);
        assert_eq!(
            permissions(&table, &roles_in_organization(&v, None), false),
            Vec::<String>::new()
        );
        assert_eq!(
            permissions(&table, &BTreeSet::new(), true),
            vec!["a", "b", "c", "d"]
        );
    }
}
