//! Bearer tokens and authContext: profile, organizations, clubs, permissions.

use std::collections::BTreeSet;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use crate::on_both_backends;

const AUTH_CONTEXT: &str = "{ authContext { user { id email fullName } currentOrganization { id name } \
    organizations { role organization { id name } } clubs { role club { id name } } permissions } }";

on_both_backends!(
    every_operation_but_introspection_needs_a_valid_token,
    |app| {
        assert_eq!(
            app.graphql(None, AUTH_CONTEXT, json!({})).await.code(),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            app.graphql(Some("not-a-jwt"), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
        // alg: none, and HS256 with another secret.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIyIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(
            app.graphql(Some(none), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
        let forged = jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "2", "exp": 9_999_999_999u64}),
            &EncodingKey::from_secret(b"some-other-secret-entirely"),
        )
        .unwrap();
        assert_eq!(
            app.graphql(Some(&forged), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
        let expired = jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "2", "exp": 1_000u64}),
            &EncodingKey::from_secret(padel_bff::config::DEVELOPMENT_JWT_SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            app.graphql(Some(&expired), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
        // A minimal valid token: only sub, iat, exp.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let minimal = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": app.user_id("owner@demo.padel").await.to_string(), "iat": now, "exp": now + 60}),
        &EncodingKey::from_secret(padel_bff::config::DEVELOPMENT_JWT_SECRET.as_bytes()),
    )
    .unwrap();
        assert_eq!(
            app.graphql(Some(&minimal), AUTH_CONTEXT, json!({}))
                .await
                .ok()["authContext"]["user"]["email"],
            "owner@demo.padel"
        );
        // Unknown and deactivated users.
        assert_eq!(
            app.graphql(Some(&app.token_for_id(999_999)), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
        let token = app.token("player@demo.padel").await;
        app.execute("UPDATE users SET is_active = FALSE WHERE email = 'player@demo.padel'")
            .await;
        assert_eq!(
            app.graphql(Some(&token), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
    }
);

/// Permissions recomputed from the raw tables: org role in the current organization plus club
/// roles in that organization's clubs.
async fn expected_permissions(app: &crate::helpers::TestApp, email: &str) -> Vec<String> {
    let user = app.user_id(email).await;
    let current = app
        .scalar_i64(&format!(
            "SELECT current_organization_id FROM users WHERE id = {user}"
        ))
        .await;
    let mut roles: BTreeSet<String> = BTreeSet::new();
    for row in app.text_rows(&format!("SELECT role FROM organization_memberships WHERE user_id = {user} AND organization_id = {current} AND is_active")).await {
        roles.insert(row[0].clone());
    }
    for row in app
        .text_rows(&format!(
            "SELECT cm.role FROM club_memberships cm JOIN clubs c ON c.id = cm.club_id \
             WHERE cm.user_id = {user} AND c.organization_id = {current} AND cm.is_active AND c.is_active"
        ))
        .await
    {
        roles.insert(row[0].clone());
    }
    let all = app
        .text_rows("SELECT role, permission FROM role_permissions")
        .await;
    all.into_iter()
        .filter(|r| roles.contains(&r[0]))
        .map(|r| r[1].clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

on_both_backends!(
    auth_context_folds_profile_memberships_and_permissions_into_one_query,
    |app| {
        for email in [
            "owner@demo.padel",
            "manager@demo.padel",
            "staff@demo.padel",
            "player@demo.padel",
            "owner2@demo.padel",
            "member@demo.padel",
        ] {
            let token = app.token(email).await;
            let reply = app.graphql(Some(&token), AUTH_CONTEXT, json!({})).await;
            let ctx = &reply.ok()["authContext"];
            assert_eq!(ctx["user"]["email"], email);
            let permissions: Vec<String> =
                serde_json::from_value(ctx["permissions"].clone()).unwrap();
            assert_eq!(
                permissions,
                expected_permissions(&app, email).await,
                "permissions of {email}"
            );
            assert!(
                reply.sql_statements() <= 3,
                "{email}: {} statements",
                reply.sql_statements()
            );
        }
        let token = app.token("manager@demo.padel").await;
        let ctx = app
            .graphql(Some(&token), AUTH_CONTEXT, json!({}))
            .await
            .ok()["authContext"]
            .clone();
        assert_eq!(ctx["clubs"].as_array().unwrap().len(), 1);
        assert_eq!(ctx["clubs"][0]["role"], "MANAGER");
        assert_eq!(ctx["organizations"][0]["role"], "MEMBER");
        // The superuser holds every permission in the table.
        let token = app.token("admin@demo.padel").await;
        let ctx = app
            .graphql(Some(&token), AUTH_CONTEXT, json!({}))
            .await
            .ok()["authContext"]
            .clone();
        let all = app
            .scalar_i64("SELECT COUNT(DISTINCT permission) FROM role_permissions")
            .await;
        assert_eq!(ctx["permissions"].as_array().unwrap().len() as i64, all);
    }
);

on_both_backends!(
    switch_organization_needs_membership_and_changes_the_context,
    |app| {
        let user = app.user_id("player@demo.padel").await;
        // Make the player a member of the second organization too.
        app.execute(&format!("INSERT INTO organization_memberships (user_id, organization_id, role, is_active) VALUES ({user}, 2, 'admin', TRUE)")).await;
        let token = app.token("player@demo.padel").await;
        let query = "mutation($id: ID!) { switchOrganization(organizationId: $id) { currentOrganization { id } permissions } }";
        let reply = app.graphql(Some(&token), query, json!({"id": "2"})).await;
        assert_eq!(
            reply.ok()["switchOrganization"]["currentOrganization"]["id"],
            "2"
        );
        let permissions: Vec<String> =
            serde_json::from_value(reply.data()["switchOrganization"]["permissions"].clone())
                .unwrap();
        assert_eq!(
            permissions,
            expected_permissions(&app, "player@demo.padel").await
        );
        assert!(permissions.contains(&"dashboard:view".to_string()));
        let outsider = app.token("owner2@demo.padel").await;
        assert_eq!(
            app.graphql(Some(&outsider), query, json!({"id": "1"}))
                .await
                .code(),
            "NOT_FOUND"
        );
        assert_eq!(
            app.graphql(Some(&outsider), query, json!({"id": "424242"}))
                .await
                .code(),
            "NOT_FOUND"
        );
        assert_eq!(
            app.graphql(Some(&outsider), query, json!({"id": "abc"}))
                .await
                .code(),
            "BAD_USER_INPUT"
        );
    }
);

/// Polls a request until it answers `code` (changes behind the gateway arrive by NOTIFY).
async fn until_code(app: &crate::helpers::TestApp, token: &str, query: &str, code: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let reply = app.graphql(Some(token), query, json!({})).await;
        if reply.code() == code {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} instead of {code}: {}",
            reply.code(),
            reply.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_behind_the_gateways_back_ends_access_despite_the_cache() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let token = app.token("manager@demo.padel").await;
    let dashboard = "{ dashboard(clubId: 1) { from } }";
    // Warm: the manager's context and the club are cached.
    for _ in 0..2 {
        app.graphql(Some(&token), dashboard, json!({})).await.ok();
    }
    let user = app.user_id("manager@demo.padel").await;
    app.execute(&format!(
        "UPDATE club_memberships SET is_active = FALSE WHERE user_id = {user} AND club_id = 1"
    ))
    .await;
    until_code(&app, &token, dashboard, "NOT_FOUND").await;
    app.execute(&format!(
        "UPDATE users SET is_active = FALSE WHERE id = {user}"
    ))
    .await;
    until_code(
        &app,
        &token,
        "{ authContext { user { email } } }",
        "UNAUTHENTICATED",
    )
    .await;
}
