//! Shared answers (`pipeline::share`): one caller's rendered `courtAvailability`, `dashboard` or
//! `club` answers another's identical field, after that caller's access is re-checked. They must
//! be exactly as correct as the executor: a differential test over random documents and every
//! role, plus the writes and revocations that must reach them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    eventually, slot_free, spawn_app, spawn_app_with, Backend, TestApp, DEMO_USERS,
};

/// A small deterministic generator (the test must replay the same documents on failure).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The object types of the three operations: (type, [(field, sub-type or "" for a leaf)]).
fn fields_of(ty: &str) -> &'static [(&'static str, &'static str)] {
    match ty {
        "CourtAvailability" => &[
            ("club", "Club"),
            ("date", ""),
            ("slotMinutes", ""),
            ("courts", "CourtSlots"),
        ],
        "CourtSlots" => &[
            ("court", "Court"),
            ("availableCount", ""),
            ("slots", "Slot"),
        ],
        "Slot" => &[("start", ""), ("end", ""), ("available", "")],
        "Court" => &[
            ("id", ""),
            ("name", ""),
            ("surface", ""),
            ("indoor", ""),
            ("active", ""),
            ("inMaintenance", ""),
            ("pricePerHour", ""),
            ("club", "Club"),
        ],
        "Club" => &[
            ("id", ""),
            ("name", ""),
            ("slug", ""),
            ("timezone", ""),
            ("organization", "Organization"),
            ("courts", "Court"),
        ],
        "Organization" => &[("id", ""), ("name", ""), ("slug", ""), ("clubs", "Club")],
        "ClubDashboard" => &[
            ("club", "Club"),
            ("period", ""),
            ("from", ""),
            ("to", ""),
            ("current", "PeriodStats"),
            ("previous", "PeriodStats"),
            ("change", "PeriodChange"),
            ("courts", "CourtStats"),
            ("daily", "DayStats"),
            ("peakHours", "HourStats"),
        ],
        "PeriodStats" => &[
            ("reservations", ""),
            ("cancelled", ""),
            ("revenue", ""),
            ("occupancyRate", ""),
            ("uniquePlayers", ""),
        ],
        "PeriodChange" => &[
            ("reservationsPct", ""),
            ("revenuePct", ""),
            ("occupancyPct", ""),
        ],
        "CourtStats" => &[
            ("court", "Court"),
            ("reservations", ""),
            ("occupancyRate", ""),
            ("revenue", ""),
        ],
        "DayStats" => &[
            ("date", ""),
            ("reservations", ""),
            ("revenue", ""),
            ("occupancyRate", ""),
        ],
        "HourStats" => &[("hour", ""), ("reservations", "")],
        other => panic!("no fields for {other}"),
    }
}

/// One random document: its text grows fragments into `fragments`.
struct Writer<'a> {
    rng: &'a mut Lcg,
    fragments: Vec<String>,
    /// How many of `root_field`'s operations to draw from (the first `roots`).
    roots: usize,
}

impl Writer<'_> {
    /// A random selection set of `ty` (never empty), with aliases, `__typename`, inline
    /// fragments, named fragments and `@skip`/`@include` on a variable.
    fn selection(&mut self, ty: &str, depth: usize) -> String {
        let fields = fields_of(ty);
        let mut parts = Vec::new();
        let count = 1 + self.rng.below(fields.len().min(4));
        for n in 0..count {
            let (name, sub) = fields[self.rng.below(fields.len())];
            if !sub.is_empty() && depth >= 3 {
                continue;
            }
            let args = if ty == "Club" && name == "courts" && self.rng.chance(50) {
                "(includeInactive: true)"
            } else {
                ""
            };
            // Unique aliases keep the documents valid; plain names repeat freely (merged), but
            // not with arguments (one key, two argument sets: validation refuses the document).
            let alias = if !args.is_empty() || self.rng.chance(25) {
                format!("a{depth}x{n}: ")
            } else {
                String::new()
            };
            // Rare: a skipped selection makes the document unshared (the executor answers), so
            // most documents must do without one for the shared path to be compared at all.
            let directive = match self.rng.below(24) {
                0 => " @skip(if: $flag)",
                1 => " @include(if: $flag)",
                2 => " @include(if: true)",
                _ => "",
            };
            let body = if sub.is_empty() {
                String::new()
            } else {
                format!(" {{ {} }}", self.selection(sub, depth + 1))
            };
            let field = format!("{alias}{name}{args}{directive}{body}");
            parts.push(match self.rng.below(12) {
                0 | 1 => format!("... on {ty} {{ {field} }}"),
                2 if self.rng.chance(30) => format!("... @include(if: $flag) {{ {field} }}"),
                3 | 4 => {
                    let name = format!("F{}", self.fragments.len());
                    self.fragments
                        .push(format!("fragment {name} on {ty} {{ {field} }}"));
                    format!("...{name}")
                }
                _ => field,
            });
        }
        if parts.is_empty() || self.rng.chance(15) {
            parts.push("__typename".into());
        }
        parts.join(" ")
    }

    fn root_field(&mut self, n: usize, club: &str, date: &str) -> String {
        // The second root field is always aliased: two under one key with other arguments
        // would make the document invalid.
        let alias = if n > 0 || self.rng.chance(50) {
            format!("r{n}: ")
        } else {
            String::new()
        };
        let (field, ty) = match self.rng.below(self.roots) {
            0 => {
                let slot = [
                    "",
                    ", slotMinutes: 60",
                    ", slotMinutes: 90",
                    ", slotMinutes: 120",
                ][self.rng.below(4)];
                (
                    format!("courtAvailability(clubId: {club}, date: {date}{slot})"),
                    "CourtAvailability",
                )
            }
            1 => {
                let period =
                    ["", ", period: DAY", ", period: WEEK", ", period: MONTH"][self.rng.below(4)];
                (
                    format!("dashboard(clubId: {club}, date: {date}{period})"),
                    "ClubDashboard",
                )
            }
            _ => (format!("club(id: {club})"), "Club"),
        };
        format!("{alias}{field} {{ {} }}", self.selection(ty, 0))
    }
}

/// A random query over one or two of the three operations, and its variables.
fn document(rng: &mut Lcg, clubs: &[i64], dates: &[String]) -> (String, Value) {
    document_over(rng, clubs, dates, 3)
}

/// A random query over one or two of the first `roots` of `courtAvailability`, `dashboard` and
/// `club`, and its variables.
fn document_over(rng: &mut Lcg, clubs: &[i64], dates: &[String], roots: usize) -> (String, Value) {
    let mut writer = Writer {
        rng,
        fragments: Vec::new(),
        roots,
    };
    let club = clubs[writer.rng.below(clubs.len())];
    let date = &dates[writer.rng.below(dates.len())];
    let by_variable = writer.rng.chance(60);
    let (club_arg, date_arg) = if by_variable {
        ("$club".to_string(), "$date".to_string())
    } else {
        (format!("\"{club}\""), format!("\"{date}\""))
    };
    let mut roots = Vec::new();
    for n in 0..1 + writer.rng.below(2) {
        roots.push(writer.root_field(n, &club_arg, &date_arg));
    }
    if writer.rng.chance(10) {
        roots.insert(0, "__typename".into());
    }
    let body = roots.join(" ");
    let all = format!("{body} {}", writer.fragments.join(" "));
    let mut declared = Vec::new();
    let mut variables = json!({});
    // Only the variables the document uses (an unused one is a validation error).
    if all.contains("$club") {
        declared.push("$club: ID!".to_string());
        variables["club"] = json!(club.to_string());
    }
    if all.contains("$date") {
        declared.push("$date: Date!".to_string());
        variables["date"] = json!(date);
    }
    if all.contains("$flag") {
        // Its value is set per request (`with_flag`). `@skip`/`@include` take `Boolean!`: a
        // nullable variable is allowed there only with a default (without one, validation
        // refuses every such document and the comparison would be of two errors).
        declared.push("$flag: Boolean = true".into());
    }
    let head = if declared.is_empty() {
        "query Screen".to_string()
    } else {
        format!("query Screen({})", declared.join(", "))
    };
    (
        format!("{head} {{ {body} }} {}", writer.fragments.join(" ")),
        variables,
    )
}

/// The variables with `$flag` true, false or unset (its declared default `true` then applies), by
/// `n`: one document is sent with all three (to groups of callers, who share within
/// the group), so a plan that ignored a condition
/// would serve one variant's answer for another.
fn with_flag(query: &str, variables: &Value, n: usize) -> Value {
    let mut variables = variables.clone();
    if query.contains("$flag: Boolean") {
        match n % 3 {
            0 => variables["flag"] = json!(true),
            1 => variables["flag"] = json!(false),
            _ => {}
        }
    }
    variables
}

/// The body's `data` text exactly as sent, and its `errors` text (empty when none). The
/// `extensions` (the cache outcomes this profile shows) necessarily differ and are left out.
fn data_and_errors(body: &str) -> (String, String) {
    let rest = body
        .strip_prefix("{\"data\":")
        .unwrap_or_else(|| panic!("no data: {body}"));
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    stream.next().expect("a data value").expect("valid data");
    let end = stream.byte_offset();
    let errors = rest[end..]
        .find(",\"errors\":")
        .map(|at| rest[end + at..].to_string())
        .unwrap_or_default();
    (rest[..end].to_string(), errors)
}

async fn raw(app: &TestApp, token: &str, query: &str, variables: &Value) -> String {
    app.client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn kind_stat(status: &Value, kind: &str, stat: &str) -> u64 {
    status["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind)
        .map(|k| k["stats"][stat].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_answers_are_byte_identical_to_the_executor_for_every_role() {
    let shared = spawn_app(Backend::Postgres).await;
    // The same database, shared answers off: every answer comes from the executor.
    let plain = shared
        .replica(&[("BFF__CACHE__SHARED_ANSWERS", "false")])
        .await;
    let mut tokens = Vec::new();
    for user in DEMO_USERS {
        tokens.push(shared.token(user).await);
    }
    // Clubs of both organizations, and one that does not exist.
    let mut clubs: Vec<i64> = shared
        .text_rows("SELECT id::text FROM clubs ORDER BY id")
        .await
        .iter()
        .map(|row| row[0].parse().unwrap())
        .collect();
    clubs.push(9_999);
    let dates: Vec<String> = (0..3)
        .map(|d| (shared.today + chrono::Days::new(d)).to_string())
        .collect();
    let mut rng = Lcg(0x005e_ed0f_5a1e);
    let documents = 100;
    let mut compared = 0;
    for i in 0..documents {
        let (query, variables) = document(&mut rng, &clubs, &dates);
        // A different first caller each time: managers, players and strangers all fill and
        // all read what others filled.
        let offset = rng.below(DEMO_USERS.len());
        for n in 0..DEMO_USERS.len() {
            let who = (offset + n) % DEMO_USERS.len();
            let token = &tokens[who];
            let variables = with_flag(&query, &variables, n / 4);
            let one = raw(&shared, token, &query, &variables).await;
            let other = raw(&plain, token, &query, &variables).await;
            // Every generated document is valid: a refused one would compare two errors.
            assert!(!one.contains("GRAPHQL_VALIDATION_FAILED"), "{query}\n{one}");
            assert_eq!(
                data_and_errors(&one),
                data_and_errors(&other),
                "document {i} as {}:\n{query}\n{variables}\nshared: {one}\nexecutor: {other}",
                DEMO_USERS[who]
            );
            compared += 1;
        }
    }
    let status = shared.management("/api/management/cache/status").await;
    let hits = kind_stat(&status, "shared", "l1Hits");
    let misses = kind_stat(&status, "shared", "misses");
    // The comparison means something only when the shared path answered often. Many random
    // documents never share (an unknown club, a dashboard most roles may not read, fields that
    // read SQL: `Organization.clubs`, inactive courts; a selection skipped by `$flag`).
    assert!(
        hits >= compared as u64 / 20,
        "{hits} shared hits (and {misses} misses) in {compared} requests"
    );
    let plain_status = plain.management("/api/management/cache/status").await;
    assert_eq!(kind_stat(&plain_status, "shared", "l1Hits"), 0);
}

/// Lists of leaf-only objects (slots, a dashboard's days and hours) are rendered in one pass
/// (`graphql::leaves`) unless every field gets a span: the same documents, through both, give
/// the same bytes (the caches that answer without the executor are off on both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_lists_rendered_in_one_pass_are_byte_identical_to_the_engine() {
    let no_answer_caches = [
        ("BFF__CACHE__RESPONSE_CACHE", "false"),
        ("BFF__CACHE__SHARED_ANSWERS", "false"),
    ];
    let direct = spawn_app_with(Backend::Postgres, &no_answer_caches).await;
    let engine = direct
        .replica(&[("BFF__TELEMETRY__FIELD_SPANS", "all")])
        .await;
    let tokens = [
        direct.token("manager@demo.padel").await,
        direct.token("player@demo.padel").await,
        direct.token("owner2@demo.padel").await,
    ];
    let clubs: Vec<i64> = direct
        .text_rows("SELECT id::text FROM clubs ORDER BY id")
        .await
        .iter()
        .map(|row| row[0].parse().unwrap())
        .collect();
    let dates: Vec<String> = (0..2)
        .map(|d| (direct.today + chrono::Days::new(d)).to_string())
        .collect();
    // Edge cases first: a selection the engine leaves empty (each item `null`), repeated keys,
    // `__typename` twice, fragments inside fragments.
    let grid = |slots: &str, fragments: &str| {
        (
            format!("query Edge($club: ID!, $date: Date!) {{ courtAvailability(clubId: $club, date: $date) {{ courts {{ slots {{ {slots} }} }} }} }} {fragments}"),
            json!({"club": clubs[0].to_string(), "date": dates[0]}),
        )
    };
    let edges = [
        grid("start @skip(if: true)", ""),
        grid("... @include(if: false) { start end }", ""),
        grid("s: start start s: start ...F end", "fragment F on Slot { available __typename start ...G } fragment G on Slot { s: start }"),
        grid("__typename t: __typename ... on Slot { __typename }", ""),
        // The same list twice under one key: the engine merges the two selections.
        grid("start } slots { end start", ""),
        grid("start @skip(if: true) } slots { available", ""),
    ];
    for (query, variables) in &edges {
        let one = raw(&direct, &tokens[0], query, variables).await;
        let other = raw(&engine, &tokens[0], query, variables).await;
        assert_eq!(data_and_errors(&one), data_and_errors(&other), "{query}");
        assert!(one.contains("\"slots\":["), "{one}");
    }
    let mut rng = Lcg(0x01ea_f011_57ed);
    let mut lists = 0;
    for i in 0..150 {
        // Half the documents the shared-answer test's (availability and dashboards only: `club`
        // has no leaf lists), half aimed at the lists: random selections of their items.
        let (query, variables) = if i % 2 == 0 {
            document_over(&mut rng, &clubs, &dates, 2)
        } else {
            leaf_document(&mut rng, &clubs, &dates)
        };
        for (n, token) in tokens.iter().enumerate() {
            let variables = with_flag(&query, &variables, i + n);
            let one = raw(&direct, token, &query, &variables).await;
            let other = raw(&engine, token, &query, &variables).await;
            assert!(!one.contains("GRAPHQL_VALIDATION_FAILED"), "{query}\n{one}");
            assert_eq!(
                data_and_errors(&one),
                data_and_errors(&other),
                "document {i}, caller {n}:\n{query}\n{variables}\none pass: {one}\nengine: {other}"
            );
            if ["\"slots\":[{", "\"daily\":[{", "\"peakHours\":[{"]
                .iter()
                .any(|list| one.contains(list))
            {
                lists += 1;
            }
        }
    }
    // Many answers must hold a non-empty list for the comparison to mean anything.
    assert!(lists >= 60, "only {lists} answers held a leaf list");
}

/// A query of a grid's slots or a dashboard's days and hours, each list's items selected at
/// random (aliases, `__typename`, fragments, `@skip`/`@include` on `$flag`).
fn leaf_document(rng: &mut Lcg, clubs: &[i64], dates: &[String]) -> (String, Value) {
    let club = clubs[rng.below(clubs.len())];
    let date = dates[rng.below(dates.len())].clone();
    let mut writer = Writer {
        rng,
        fragments: Vec::new(),
        roots: 2,
    };
    let body = if writer.rng.chance(50) {
        let slots = writer.selection("Slot", 3);
        let again = if writer.rng.chance(30) {
            format!(" later: slots {{ {} }}", writer.selection("Slot", 3))
        } else {
            String::new()
        };
        format!("courtAvailability(clubId: $club, date: $date, slotMinutes: 60) {{ courts {{ availableCount slots {{ {slots} }}{again} }} }}")
    } else {
        let daily = writer.selection("DayStats", 3);
        let hours = writer.selection("HourStats", 3);
        let period = ["DAY", "WEEK", "MONTH"][writer.rng.below(3)];
        format!("dashboard(clubId: $club, date: $date, period: {period}) {{ daily {{ {daily} }} peakHours {{ {hours} }} }}")
    };
    let flag = if body.contains("$flag") || writer.fragments.iter().any(|f| f.contains("$flag")) {
        ", $flag: Boolean = true"
    } else {
        ""
    };
    (
        format!(
            "query Lists($club: ID!, $date: Date!{flag}) {{ {body} }} {}",
            writer.fragments.join(" ")
        ),
        json!({"club": club.to_string(), "date": date}),
    )
}

const GRID: &str = "query Grid($club: ID!, $date: Date!) { courtAvailability(clubId: $club, date: $date, slotMinutes: 60) { courts { court { id name } slots { start available } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_players_first_look_at_a_grid_another_player_loaded_runs_nothing_and_stays_exact() {
    let app = spawn_app(Backend::Postgres).await;
    let manager = app.token("manager@demo.padel").await;
    let player = app.token("player@demo.padel").await;
    let stranger = app.token("player2@demo.padel").await;
    let date = app.weekday_after(400);
    let variables = json!({"club": "1", "date": date});
    // The manager's look fills the shared answer (and the values under it).
    let first = app.graphql(Some(&manager), GRID, variables.clone()).await;
    first.ok();
    // The player's first look: no SQL, answered from the manager's bytes.
    let seen = app.graphql(Some(&player), GRID, variables.clone()).await;
    assert_eq!(seen.cache_outcome("shared"), "l1Hit", "{:?}", seen.body);
    assert_eq!(seen.sql_statements(), 0);
    assert_eq!(seen.data(), first.data());
    // A player of the other organization is not served it.
    let refused = app.graphql(Some(&stranger), GRID, variables.clone()).await;
    assert_eq!(refused.code(), "NOT_FOUND");
    // A booking through the gateway reaches the shared answer at once.
    let court = first.data()["courtAvailability"]["courts"][0]["court"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(slot_free(&seen, &court, "18:00"));
    let court_id = court.clone();
    app.graphql(
        Some(&manager),
        "mutation($input: CreateReservationInput!) { createReservation(input: $input) { id } }",
        json!({"input": {"courtId": court_id, "date": date, "start": "18:00", "end": "19:00"}}),
    )
    .await
    .ok();
    let after = app.graphql(Some(&player), GRID, variables.clone()).await;
    assert!(!slot_free(&after, &court, "18:00"), "{:?}", after.body);
    // Revoked by SQL (outside the gateway): the player's membership of club 1 ends, and the
    // shared answer is no longer served to them (the trigger invalidates their memberships).
    app.graphql(Some(&manager), GRID, variables.clone())
        .await
        .ok();
    let player_id = app.user_id("player@demo.padel").await;
    app.execute(&format!(
        "UPDATE club_memberships SET is_active = false WHERE user_id = {player_id} AND club_id = 1"
    ))
    .await;
    eventually(
        Duration::from_secs(10),
        "the revoked player is refused",
        || async {
            let reply = app.graphql(Some(&player), GRID, variables.clone()).await;
            (reply.code() == "NOT_FOUND").then_some(())
        },
    )
    .await;
}

/// A variable left out takes its declared default, in `@skip`/`@include` too (async-graphql alone
/// reads the variables as sent there, so `$details: Boolean = true` left out counted as false),
/// on the executor's path, the shared-answer path and a subscription's alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_default_decides_skip_and_include_on_both_paths() {
    let app = spawn_app(Backend::Postgres).await;
    let manager = app.token("manager@demo.padel").await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(410);
    let query = format!(
        "query Details($details: Boolean = true) {{ courtAvailability(clubId: \"1\", date: \"{date}\") {{ date @include(if: $details) slotMinutes }} }}"
    );
    let first = app.graphql(Some(&manager), &query, json!({})).await;
    assert_eq!(
        first.data()["courtAvailability"]["date"],
        json!(date),
        "{:?}",
        first.body
    );
    // The player's identical look is answered from the manager's.
    let shared = app.graphql(Some(&player), &query, json!({})).await;
    assert_eq!(shared.cache_outcome("shared"), "l1Hit", "{:?}", shared.body);
    assert_eq!(shared.data(), first.data());
    for token in [&manager, &player] {
        let off = app
            .graphql(Some(token), &query, json!({"details": false}))
            .await;
        assert_eq!(
            off.data()["courtAvailability"],
            json!({"slotMinutes": 90}),
            "{:?}",
            off.body
        );
    }
    // A subscription's events too (multipart over HTTP): its first event is the current value.
    let live = format!(
        "subscription Live($details: Boolean = true) {{ courtAvailabilityChanged(clubId: \"1\", date: \"{date}\") {{ date @include(if: $details) slotMinutes }} }}"
    );
    let mut response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&player)
        .header("accept", "multipart/mixed;subscriptionSpec=1.0")
        .json(&json!({"query": live, "variables": {}}))
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    while !body.contains("\"payload\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("the first event within 20 s")
            .unwrap()
            .expect("the body goes on");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        body.contains(&format!("{{\"date\":\"{date}\",\"slotMinutes\":90}}")),
        "{body}"
    );
}
