//! The platform's BFF URLs (issue 16): each answers what its persisted GraphQL operation answers
//! on `/graphql`, for users of every role and both organizations, in the platform's envelope and
//! with the platform's statuses; ETag and 304; 405 with `Allow`; the rate limit; safelist mode;
//! and the OpenAPI document, served, committed and matching the URLs the platform calls.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp, DEMO_USERS};
use crate::on_both_backends;

const AUTH: &str = include_str!("../../config/rest/auth_context.graphql");
const ANALYTICS: &str = include_str!("../../config/rest/club_analytics.graphql");
const BULK: &str = include_str!("../../config/rest/availability_bulk.graphql");

/// The platform's mapping of codes to statuses.
fn status_of(code: &str) -> u16 {
    match code {
        "UNAUTHENTICATED" => 401,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "BAD_USER_INPUT" => 400,
        "CONFLICT" => 409,
        "RATE_LIMITED" => 429,
        "SERVICE_UNAVAILABLE" => 503,
        _ => 500,
    }
}

/// A GET on a BFF URL: status, headers, body (Null when empty).
async fn get(
    app: &TestApp,
    path_and_query: &str,
    token: Option<&str>,
    if_none_match: Option<&str>,
) -> (StatusCode, header::HeaderMap, Value) {
    let mut request = app.client.get(format!("{}{path_and_query}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, headers, body)
}

/// Every URL variant with the document and variables GraphQL gets for it.
fn cases(date: &str, far: &str) -> Vec<(String, &'static str, Value)> {
    let mut cases = vec![("/api/bff/auth/context/".to_string(), AUTH, json!({}))];
    for club in 1..=4 {
        let c = club.to_string();
        cases.push((
            format!("/api/bff/bi/analytics/club/?club={club}"),
            ANALYTICS,
            json!({"clubId": c}),
        ));
        cases.push((
            format!("/api/bff/bi/analytics/club/?club={club}&period=week&date={date}"),
            ANALYTICS,
            json!({"clubId": c, "period": "WEEK", "date": date}),
        ));
        cases.push((
            format!("/api/bff/bi/analytics/club/?period=year&club={club}&date={date}&utm_source=x"),
            ANALYTICS,
            json!({"clubId": c, "period": "YEAR", "date": date}),
        ));
        cases.push((
            format!("/api/bff/bi/availability/bulk/?club={club}&date={date}"),
            BULK,
            json!({"clubId": c, "date": date}),
        ));
        cases.push((
            format!("/api/bff/bi/availability/bulk/?club={club}&date={date}&slot=60"),
            BULK,
            json!({"clubId": c, "date": date, "slotMinutes": 60}),
        ));
    }
    cases.push((
        format!("/api/bff/bi/availability/bulk/?club=1&date={date}&courts[]=2&courts%5B%5D=1"),
        BULK,
        json!({"clubId": "1", "date": date, "courtIds": ["2", "1"]}),
    ));
    // Rules only the resolvers know: answered 400 by both.
    cases.push((
        format!("/api/bff/bi/availability/bulk/?club=1&date={far}"),
        BULK,
        json!({"clubId": "1", "date": far}),
    ));
    cases.push((
        format!("/api/bff/bi/availability/bulk/?club=1&date={date}&courts[]=999"),
        BULK,
        json!({"clubId": "1", "date": date, "courtIds": ["999"]}),
    ));
    cases.push((
        "/api/bff/bi/analytics/club/?club=999".to_string(),
        ANALYTICS,
        json!({"clubId": "999"}),
    ));
    cases
}

on_both_backends!(bff_urls_answer_what_graphql_answers_for_every_role, |app| {
    let date = app.weekday_after(2);
    let far = app.weekday_after(900);
    let mut statuses = std::collections::BTreeSet::new();
    let mut callers: Vec<Option<String>> = vec![None];
    for user in DEMO_USERS {
        callers.push(Some(app.token(user).await));
    }
    for token in &callers {
        for (url, document, variables) in cases(&date, &far) {
            let graphql = app.graphql(token.as_deref(), document, variables).await;
            let (status, headers, body) = get(&app, &url, token.as_deref(), None).await;
            statuses.insert(status.as_u16());
            let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
            assert_eq!(content_type, "application/json", "{url}");
            match graphql.body.get("errors") {
                None => {
                    assert_eq!(status, StatusCode::OK, "{url}: {body}");
                    assert_eq!(
                        body,
                        json!({"success": true, "data": graphql.data()}),
                        "{url}"
                    );
                    assert!(headers.contains_key(header::ETAG), "{url}");
                }
                Some(errors) => {
                    let code = errors[0]["extensions"]["code"].as_str().unwrap();
                    assert_eq!(status.as_u16(), status_of(code), "{url}: {body}");
                    assert_eq!(body["success"], false, "{url}");
                    assert_eq!(body["error"]["code"], code, "{url}");
                    assert_eq!(body["error"]["message"], errors[0]["message"], "{url}");
                    let request_id = body["error"]["requestId"].as_str().unwrap();
                    assert_eq!(request_id, headers["x-request-id"].to_str().unwrap());
                    assert_eq!(
                        body.as_object().unwrap().len(),
                        2,
                        "only success and error: {body}"
                    );
                }
            }
        }
    }
    // Every role and tenant was seen: answers, anonymous, a player's dashboard, another
    // organization's club, and rules of the resolvers.
    for expected in [200, 400, 401, 403, 404] {
        assert!(
            statuses.contains(&expected),
            "no {expected} among {statuses:?}"
        );
    }
});

on_both_backends!(
    malformed_parameters_are_400_bad_user_input_naming_the_parameter,
    |app| {
        let token = app.token("manager@demo.padel").await;
        let date = app.weekday_after(2);
        for (url, names) in [
            (
                "/api/bff/bi/availability/bulk/?date=2026-12-02".to_string(),
                "club",
            ),
            ("/api/bff/bi/availability/bulk/?club=1".to_string(), "date"),
            (
                format!("/api/bff/bi/availability/bulk/?club=x&date={date}"),
                "club",
            ),
            (
                format!("/api/bff/bi/availability/bulk/?club=01&date={date}"),
                "club",
            ),
            (
                format!("/api/bff/bi/availability/bulk/?club=1&club=2&date={date}"),
                "club",
            ),
            (
                "/api/bff/bi/availability/bulk/?club=1&date=2026-02-30".to_string(),
                "date",
            ),
            (
                format!("/api/bff/bi/availability/bulk/?club=1&date={date}&slot=300"),
                "slot",
            ),
            (
                format!("/api/bff/bi/availability/bulk/?club=1&date={date}&slot=ninety"),
                "slot",
            ),
            (
                format!("/api/bff/bi/availability/bulk/?club=1&date={date}&courts[]=a"),
                "courts[]",
            ),
            (
                "/api/bff/bi/analytics/club/?club=1&period=MONTH".to_string(),
                "period",
            ),
            (
                "/api/bff/bi/analytics/club/?club=1&period=quarter".to_string(),
                "period",
            ),
            (
                "/api/bff/bi/analytics/club/?club=1&date=tomorrow".to_string(),
                "date",
            ),
            ("/api/bff/bi/analytics/club/".to_string(), "club"),
        ] {
            let (status, _, body) = get(&app, &url, Some(&token), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
            assert_eq!(body["error"]["code"], "BAD_USER_INPUT", "{url}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("`{names}`")), "{url}: {message}");
        }
    }
);

on_both_backends!(etags_revalidate_with_304_until_the_answer_changes, |app| {
    let player = app.token("player@demo.padel").await;
    // Far past the demo seed's bookings (they lie around today): the 18:00 booking below is free.
    let date = app.weekday_after(310);
    let url = format!("/api/bff/bi/availability/bulk/?club=1&date={date}&courts[]=1");
    let (status, first, first_body) = get(&app, &url, Some(&player), None).await;
    assert_eq!(status, StatusCode::OK, "{first_body}");
    let tag = first[header::ETAG].to_str().unwrap().to_string();
    assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
    assert_eq!(first[header::CACHE_CONTROL], "private, no-cache");
    // The repeat is a whole-response cache hit (no SQL, the response kind's hits move), and its
    // tag, computed from the stored entry's bytes, is the same.
    let hits = app.cache_stat("response", "l1Hits").await;
    let (_, again, _) = get(&app, &url, Some(&player), None).await;
    assert_eq!(again[header::ETAG].to_str().unwrap(), tag);
    assert_eq!(again["x-sql-statements"], "0");
    assert_eq!(
        app.cache_stat("response", "l1Hits").await,
        hits + 1,
        "served from the response cache"
    );
    for matching in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"x\", {tag}"),
        "*".into(),
    ] {
        let (status, headers, body) = get(&app, &url, Some(&player), Some(&matching)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{matching}");
        assert_eq!(body, Value::Null, "304 has no body");
        assert_eq!(headers[header::ETAG].to_str().unwrap(), tag);
    }
    let (status, _, _) = get(&app, &url, Some(&player), Some("\"other\"")).await;
    assert_eq!(status, StatusCode::OK);
    // Without a valid token the tag does not help: 401, not 304.
    let (status, _, _) = get(&app, &url, None, Some(&tag)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A booking changes the answer: the old tag no longer matches.
    app.graphql(
        Some(&player),
        "mutation($d: Date!) { createReservation(input: {courtId: 1, date: $d, start: \"18:00\", end: \"19:00\"}) { id } }",
        json!({"d": date}),
    )
    .await
    .ok();
    let (status, changed, body) = get(&app, &url, Some(&player), Some(&tag)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(changed[header::ETAG].to_str().unwrap(), tag);
    let free = |body: &Value| {
        body["data"]["courtAvailability"]["courts"][0]["availableCount"]
            .as_i64()
            .unwrap()
    };
    assert!(free(&body) < free(&first_body), "{body}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_with_allow() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    for path in [
        "/api/bff/auth/context/",
        "/api/bff/bi/analytics/club/",
        "/api/bff/bi/availability/bulk/",
        "/api/openapi.json",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let response = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.address))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let allow = response.headers()[header::ALLOW]
                .to_str()
                .unwrap()
                .to_string();
            assert!(
                allow.split(',').any(|m| m.trim() == "GET"),
                "{method} {path}: {allow}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_urls_pay_the_rate_limit_and_answer_429_in_the_envelope() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__RATE_LIMIT__QUERY_BURST", "2"),
            ("BFF__RATE_LIMIT__QUERY_PER_SECOND", "0.01"),
        ],
    )
    .await;
    let token = app.token("player@demo.padel").await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let (status, headers, body) = get(&app, "/api/bff/auth/context/", Some(&token), None).await;
        statuses.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((headers, body));
        }
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let (headers, body) = limited.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let wait: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    // The same bucket as /graphql: GraphQL is refused too.
    let reply = app
        .graphql(Some(&token), "{ authContext { user { id } } }", json!({}))
        .await;
    assert_eq!(reply.code(), "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_urls_run_in_safelist_mode() {
    let manifest = std::env::temp_dir().join(format!(
        "padel-bff-rest-manifest-{}.json",
        std::process::id()
    ));
    std::fs::write(
        &manifest,
        json!({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id": "me", "name": "Me", "type": "query", "body": "query Me { authContext { user { id } } }"}]}).to_string(),
    )
    .unwrap();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("BFF__SERVER__SAFELIST_MANIFEST", manifest.to_str().unwrap())],
    )
    .await;
    let token = app.token("owner@demo.padel").await;
    let (status, _, body) = get(&app, "/api/bff/auth/context/", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["authContext"]["user"]["email"],
        "owner@demo.padel"
    );
    // The same document sent by a client is not in the manifest: refused.
    let reply = app.graphql(Some(&token), AUTH, json!({})).await;
    assert_eq!(reply.code(), "OPERATION_NOT_IN_SAFELIST");
    let _ = std::fs::remove_file(manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_committed_served_and_names_the_platforms_urls() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let response = app
        .client
        .get(format!("{}/api/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let served = response.text().await.unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert_eq!(
        served, committed,
        "openapi.json is stale: run `cargo run -- openapi > openapi.json`"
    );
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_padel-bff"))
        .arg("openapi")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), committed);
    // The contract, as issue 16 writes it: paths, parameter names, which are required.
    let doc: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected: [(&str, &[(&str, bool)]); 3] = [
        (
            "/api/bff/bi/analytics/club/",
            &[("club", true), ("period", false), ("date", false)],
        ),
        ("/api/bff/auth/context/", &[]),
        (
            "/api/bff/bi/availability/bulk/",
            &[
                ("club", true),
                ("date", true),
                ("courts[]", false),
                ("slot", false),
            ],
        ),
    ];
    assert_eq!(doc["paths"].as_object().unwrap().len(), expected.len());
    for (path, params) in expected {
        let get = &doc["paths"][path]["get"];
        let query: Vec<(String, bool)> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["required"].as_bool().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, bool)> = params.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert_eq!(query, want, "{path}");
        for status in [
            "200", "304", "400", "401", "403", "404", "409", "429", "500", "503",
        ] {
            assert!(
                get["responses"].get(status).is_some(),
                "{path} documents {status}"
            );
        }
        assert!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
                ["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty()),
            "{path}: a full response schema"
        );
    }
    let period = doc["paths"]["/api/bff/bi/analytics/club/"]["get"]["parameters"][1]["schema"]
        ["enum"]
        .clone();
    assert_eq!(period, json!(["day", "week", "month", "year"]));
}
