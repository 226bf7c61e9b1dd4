//! The tenant sweep: 1 000 interleaved warm-cache requests from users of both organizations and
//! anonymous callers, through two replicas sharing Redis: nobody ever sees the other
//! organization's data, and a foreign id answers exactly like a missing one.

use serde_json::{json, Value};

use crate::helpers::{shared_redis_url, spawn_app_with, unique_prefix, Backend};

/// What identifies each organization's data in a response body.
const ORG1_MARKERS: &[&str] = &[
    "Padel Norte",
    "padel-norte",
    "owner@demo.padel",
    "manager@demo.padel",
    "staff@demo.padel",
    "\"player@demo.padel",
];
const ORG2_MARKERS: &[&str] = &[
    "Costa Padel",
    "costa-padel",
    "owner2@demo.padel",
    "manager2@demo.padel",
    "player2@demo.padel",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_interleaved_requests_never_cross_tenants() {
    let prefix = unique_prefix();
    let a = spawn_app_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", &shared_redis_url()),
            ("BFF__CACHE__KEY_PREFIX", &prefix),
        ],
    )
    .await;
    let b = a.replica(&[]).await;
    let date = (a.today + chrono::Duration::days(1)).to_string();
    // (token, the organization the caller belongs to)
    let callers: Vec<(Option<String>, u8)> = vec![
        (Some(a.token("owner@demo.padel").await), 1),
        (Some(a.token("player@demo.padel").await), 1),
        (Some(a.token("owner2@demo.padel").await), 2),
        (Some(a.token("player2@demo.padel").await), 2),
        (None, 0),
    ];
    let queries: Vec<(String, Value)> = (1..=4)
        .flat_map(|club| {
            [
                ("query($c: ID!) { club(id: $c) { name organization { name slug } courts { name } } }".to_string(), json!({"c": club.to_string()})),
                ("query($c: ID!, $d: Date!) { courtAvailability(clubId: $c, date: $d) { club { name } courts { court { name } availableCount } } }".to_string(), json!({"c": club.to_string(), "d": date})),
                ("query($c: ID!, $d: Date!) { reservations(clubId: $c, date: $d) { id createdBy { email } court { club { organization { name } } } } }".to_string(), json!({"c": club.to_string(), "d": date})),
                ("query($c: ID!) { dashboard(clubId: $c) { club { name } current { reservations } } }".to_string(), json!({"c": club.to_string()})),
            ]
        })
        .chain([("{ authContext { user { email } organizations { organization { name clubs { name } } } clubs { club { name } } } }".to_string(), json!({}))])
        .collect();
    let mut checked = 0;
    for round in 0..1000usize {
        let (token, org) = &callers[round % callers.len()];
        let (query, vars) = &queries[(round / callers.len() + round) % queries.len()];
        let app = if round % 2 == 0 { &a } else { &b };
        let reply = app.graphql(token.as_deref(), query, vars.clone()).await;
        assert_ne!(reply.status.as_u16(), 500);
        if let Some(cache_control) = reply.headers.get("cache-control") {
            assert!(!cache_control.to_str().unwrap().contains("public"));
        }
        let text = reply.body["data"].to_string();
        match org {
            0 => {
                assert_eq!(
                    reply.code(),
                    "UNAUTHENTICATED",
                    "anonymous got {}",
                    reply.body
                );
                // Nothing but nulls: `data: null`, or each (nullable) root field null.
                let data = &reply.body["data"];
                assert!(
                    data.is_null()
                        || data
                            .as_object()
                            .is_some_and(|m| m.values().all(serde_json::Value::is_null)),
                    "anonymous got data: {}",
                    reply.body
                );
            }
            1 => assert!(
                !ORG2_MARKERS.iter().any(|m| text.contains(m)),
                "an organization-1 user saw organization 2: {text}"
            ),
            _ => assert!(
                !ORG1_MARKERS.iter().any(|m| text.contains(m)),
                "an organization-2 user saw organization 1: {text}"
            ),
        }
        let club: Option<i64> = vars
            .get("c")
            .and_then(|c| c.as_str())
            .and_then(|c| c.parse().ok());
        let foreign = matches!((org, club), (1, Some(3 | 4)) | (2, Some(1 | 2)));
        if foreign && round % 10 < 3 {
            // What a missing club answers to the same caller and query.
            let missing = app
                .graphql(token.as_deref(), query, json!({"c": "999999", "d": date}))
                .await
                .body;
            assert_eq!(
                reply.body["errors"], missing["errors"],
                "a foreign club must answer like a missing one"
            );
            assert_eq!(reply.body["data"], missing["data"]);
            checked += 1;
        }
    }
    assert!(checked > 10, "foreign/missing comparisons made: {checked}");
}
