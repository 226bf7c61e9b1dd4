//! Bearer tokens and authContext: profile, organizations, clubs, permissions.

use std::{collections::BTreeSet, time::Duration};

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
        // alg: none, and HS256 with another secret (forged by hand on purpose).
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
        // Forged by hand on purpose (TokenAuthority signs only valid ones): the app's own key, long
        // expired.
        let expired = jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "2", "exp": 1_000u64}),
            &EncodingKey::from_secret(app.jwt_secret().as_bytes()),
        )
        .unwrap();
        assert_eq!(
            app.graphql(Some(&expired), AUTH_CONTEXT, json!({}))
                .await
                .code(),
            "UNAUTHENTICATED"
        );
        // A minimal valid token: only sub, iat, exp. Built by hand with the app's key, since the
        // point is this exact claim set, whatever TokenAuthority::sign may add one day.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let minimal = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": app.user_id("owner@demo.padel").await.to_string(), "iat": now, "exp": now + 60}),
        &EncodingKey::from_secret(app.jwt_secret().as_bytes()),
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
    a_second_auth_context_with_clubs_and_organizations_runs_no_sql_for_any_role,
    |app| {
        // Another selection than the first request's, so the second is no whole-response hit:
        // every value (principal, memberships' clubs, permissions) must come from the cache.
        const AGAIN: &str = "{ me: authContext { user { email } currentOrganization { name } \
            organizations { role organization { name slug } } \
            clubs { role club { name slug timezone organization { name } } } permissions } }";
        for email in [
            "player@demo.padel",
            "manager@demo.padel",
            "staff@demo.padel",
            "player2@demo.padel",
            "owner@demo.padel",
        ] {
            let token = app.token(email).await;
            let first = app.graphql(Some(&token), AUTH_CONTEXT, json!({})).await;
            first.ok();
            let second = app.graphql(Some(&token), AGAIN, json!({})).await;
            let me = &second.ok()["me"];
            assert_eq!(me["user"]["email"], email);
            assert_eq!(
                me["clubs"].as_array().map(Vec::len),
                first.ok()["authContext"]["clubs"].as_array().map(Vec::len),
                "{email}: the same memberships"
            );
            assert_ne!(second.cache_outcome("response"), "l1Hit", "{email}");
            assert_eq!(second.sql_statements(), 0, "{email}: {}", second.body);
            // ... and, built from cached values only, it is kept whole.
            let third = app.graphql(Some(&token), AGAIN, json!({})).await;
            assert_eq!(third.body["data"], second.body["data"], "{email}");
            assert_eq!(third.cache_outcome("response"), "l1Hit", "{email}");
            assert_eq!(third.sql_statements(), 0, "{email}");
        }
        // A renamed club reaches its members' context (the club's tag is on the entry).
        let token = app.token("player@demo.padel").await;
        app.execute("UPDATE clubs SET name = 'Renamed Club' WHERE id = 2")
            .await;
        // What the invalidation triggers (or a writer through the gateway) publish for it.
        let admin = app.token("admin@demo.padel").await;
        let flushed = app
            .client
            .post(format!("{}/api/management/cache/flush", app.address))
            .bearer_auth(&admin)
            .json(&json!({ "tag": "club:2" }))
            .send()
            .await
            .unwrap();
        assert_eq!(flushed.status(), 200);
        let after = app.graphql(Some(&token), AUTH_CONTEXT, json!({})).await;
        let names: Vec<String> = after.ok()["authContext"]["clubs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["club"]["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.contains(&"Renamed Club".to_string()), "{names:?}");
    }
);

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

/// Polls a request until it answers `code` (changes behind the gateway arrive through the
/// invalidation outbox).
async fn until_code(app: &crate::helpers::TestApp, token: &str, query: &str, code: &str) {
    let what = format!("the reply never became {code}");
    crate::helpers::eventually(Duration::from_secs(3), &what, || async {
        let reply = app.graphql(Some(token), query, json!({})).await;
        if reply.code() == code {
            Ok(())
        } else {
            Err(format!("{}: {}", reply.code(), reply.body))
        }
    })
    .await
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

/// The test-only keys in tests/fixtures/jwt.
fn key_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// An identity provider's JWKS endpoint under the test's control: it publishes a chosen subset of
/// the fixture keys and counts how often it is asked.
struct JwksEndpoint {
    url: String,
    published: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksEndpoint {
    async fn start(kids: &[&'static str]) -> Self {
        use std::sync::{atomic::AtomicUsize, Arc, Mutex};
        let all: serde_json::Value = serde_json::from_slice(&key_fixture("jwks.json")).unwrap();
        let published = Arc::new(Mutex::new(kids.to_vec()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (p, h) = (published.clone(), hits.clone());
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let kids = p.lock().unwrap().clone();
                let keys: Vec<serde_json::Value> = all["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
                    .cloned()
                    .collect();
                async move { axum::Json(json!({ "keys": keys })) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        JwksEndpoint {
            url,
            published,
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn publish(&self, kid: &'static str) {
        self.published.lock().unwrap().push(kid);
    }
}

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "padel-bff";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Standard claims for `sub`, valid for a minute, from our issuer to our audience.
fn idp_claims(sub: i64) -> serde_json::Value {
    let now = unix_now();
    json!({"sub": sub.to_string(), "iat": now, "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE})
}

/// The identity provider's tokens, signed by hand: TokenAuthority verifies RS256/ES256 tokens but
/// signs only HS256 ones (the gateway is not an identity provider).
///
/// Signs `claims` the way the identity provider does, with the fixture key `kid`, declaring `alg`
/// and `header_kid` in the header (they differ from the real key in the confusion attacks).
fn idp_token(
    alg: jsonwebtoken::Algorithm,
    header_kid: &str,
    signing_key: &str,
    claims: &serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(header_kid.to_string());
    let key = if signing_key.starts_with("ec") {
        EncodingKey::from_ec_der(&key_fixture(&format!("{signing_key}.pk8")))
    } else {
        EncodingKey::from_rsa_der(&key_fixture(&format!("{signing_key}.der")))
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_tokens_are_verified_with_cached_keys_and_rotation_refreshes_them() {
    use jsonwebtoken::Algorithm::{ES256, HS256, RS256};
    let idp = JwksEndpoint::start(&["rsa-1", "ec-1"]).await;
    let app = crate::helpers::spawn_app_with(
        crate::helpers::Backend::Postgres,
        &[
            ("BFF_JWKS_URL", &idp.url),
            ("BFF__AUTH__JWKS_MIN_REFRESH_INTERVAL", "3s"),
            ("BFF__AUTH__ISSUER", ISSUER),
            ("BFF__AUTH__AUDIENCE", AUDIENCE),
            ("BFF__AUTH__LEEWAY", "30s"),
        ],
    )
    .await;
    let owner = app.user_id("owner@demo.padel").await;
    let email = |reply: &crate::helpers::Reply| {
        reply.ok()["authContext"]["user"]["email"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let query = "{ authContext { user { email } } }";
    assert_eq!(idp.hits(), 1, "the key set is fetched once at start");

    // RS256 and ES256 tokens verify, and the keys are not fetched again for them.
    for _ in 0..10 {
        let rs = idp_token(RS256, "rsa-1", "rsa-1", &idp_claims(owner));
        let es = idp_token(ES256, "ec-1", "ec-1", &idp_claims(owner));
        assert_eq!(
            email(&app.graphql(Some(&rs), query, json!({})).await),
            "owner@demo.padel"
        );
        assert_eq!(
            email(&app.graphql(Some(&es), query, json!({})).await),
            "owner@demo.padel"
        );
    }
    // HS256 with the shared secret still works alongside.
    let hs = app.token("owner@demo.padel").await;
    assert_eq!(
        email(&app.graphql(Some(&hs), query, json!({})).await),
        "owner@demo.padel"
    );
    assert_eq!(idp.hits(), 1, "verified tokens never refetch the key set");

    // Accepted variations: `aud` as an array holding ours (RFC 7519; providers often send
    // one), and an expiry inside the 30 s of clock skew.
    for (field, value) in [
        ("aud", json!(["account", AUDIENCE])),
        ("exp", json!(unix_now() - 10)),
    ] {
        let mut claims = idp_claims(owner);
        claims[field] = value;
        let token = idp_token(RS256, "rsa-1", "rsa-1", &claims);
        let reply = app.graphql(Some(&token), query, json!({})).await;
        assert_eq!(email(&reply), "owner@demo.padel", "{field}");
    }
    // Refused: expiry and not-before beyond the skew, another issuer or audience.
    for (field, value) in [
        ("exp", json!(unix_now() - 120)),
        ("nbf", json!(unix_now() + 120)),
        ("iss", json!("https://evil.example.test/")),
        ("aud", json!("another-api")),
        ("aud", json!(["account", "another-api"])),
    ] {
        let mut claims = idp_claims(owner);
        claims[field] = value;
        let reply = app
            .graphql(
                Some(&idp_token(RS256, "rsa-1", "rsa-1", &claims)),
                query,
                json!({}),
            )
            .await;
        assert_eq!(reply.code(), "UNAUTHENTICATED", "{field}: {}", reply.body);
    }

    // Algorithm confusion (RFC 8725): HS256 "signed" with the RSA public key the attacker can read
    // from the JWKS, an RS256 header naming the EC key, an ES256 header naming an RSA key, none.
    let public_pem = key_fixture("rsa-1.pub.pem");
    let mut header = Header::new(HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &idp_claims(owner),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let mut attacks = vec![
        ("HS256 with the public key", confused),
        (
            "RS256 naming the EC key",
            idp_token(RS256, "ec-1", "rsa-1", &idp_claims(owner)),
        ),
        (
            "ES256 naming the RSA key",
            idp_token(ES256, "rsa-1", "ec-1", &idp_claims(owner)),
        ),
    ];
    let unsigned = idp_token(RS256, "rsa-1", "rsa-1", &idp_claims(owner));
    let parts: Vec<&str> = unsigned.split('.').collect();
    attacks.push((
        "alg none",
        format!("eyJhbGciOiJub25lIiwia2lkIjoicnNhLTEifQ.{}.", parts[1]),
    ));
    attacks.push((
        "RS256 without signature",
        format!("{}.{}.", parts[0], parts[1]),
    ));
    for (name, token) in &attacks {
        let reply = app.graphql(Some(token), query, json!({})).await;
        assert_eq!(reply.code(), "UNAUTHENTICATED", "{name}: {}", reply.body);
        assert!(reply.data().is_null(), "{name}: {}", reply.body);
    }

    // Rotation: a token signed by a key the provider has not published yet is refused after one
    // refresh; a burst of such tokens costs no more fetches inside the minimum interval.
    // The interval is the gateway's to keep: its clock moves past it.
    app.clock.advance(std::time::Duration::from_millis(3_100));
    let rotated = idp_token(RS256, "rsa-2", "rsa-2", &idp_claims(owner));
    let before = idp.hits();
    for _ in 0..20 {
        let reply = app.graphql(Some(&rotated), query, json!({})).await;
        assert_eq!(reply.code(), "UNAUTHENTICATED", "{}", reply.body);
    }
    assert_eq!(
        idp.hits(),
        before + 1,
        "unknown kids refresh at most once per interval"
    );
    idp.publish("rsa-2");
    app.clock.advance(std::time::Duration::from_millis(3_100));
    assert_eq!(
        email(&app.graphql(Some(&rotated), query, json!({})).await),
        "owner@demo.padel"
    );
    assert_eq!(idp.hits(), before + 2);
    // The old key keeps working without another fetch.
    let rs = idp_token(RS256, "rsa-1", "rsa-1", &idp_claims(owner));
    assert_eq!(
        email(&app.graphql(Some(&rs), query, json!({})).await),
        "owner@demo.padel"
    );
    assert_eq!(idp.hits(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_empty_secret_only_jwks_tokens_are_accepted() {
    use jsonwebtoken::Algorithm::RS256;
    let idp = JwksEndpoint::start(&["rsa-1"]).await;
    let app = crate::helpers::spawn_app_with(
        crate::helpers::Backend::Postgres,
        &[
            ("BFF_JWKS_URL", &idp.url),
            ("BFF_JWT_SECRET", ""),
            ("BFF__AUTH__ISSUER", ISSUER),
            ("BFF__AUTH__AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    let owner = app.user_id("owner@demo.padel").await;
    let query = "{ authContext { user { email } } }";
    let rs = idp_token(RS256, "rsa-1", "rsa-1", &idp_claims(owner));
    assert_eq!(
        app.graphql(Some(&rs), query, json!({})).await.ok()["authContext"]["user"]["email"],
        "owner@demo.padel"
    );
    // An HS256 token signed with the development secret is worthless here (forged by hand on
    // purpose: this app has no secret, so it has nothing to sign with).
    let hs = jsonwebtoken::encode(
        &Header::default(),
        &idp_claims(owner),
        &EncodingKey::from_secret(padel_bff::config::DEVELOPMENT_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let reply = app.graphql(Some(&hs), query, json!({})).await;
    assert_eq!(reply.code(), "UNAUTHENTICATED", "{}", reply.body);
}
