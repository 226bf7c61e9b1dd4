//! Criterion micro-benchmarks of the hot pure functions: slot computation, dashboard aggregation
//! in Rust, cache key derivation, value encoding, and the in-process cache (a value lookup and a
//! whole-response lookup), and the selection-order pass over an answer.
//!
//! `cargo bench --bench domain` measures (reports in target/criterion). Under
//! `cargo test --all-targets` criterion runs each benchmark once as a smoke test.

use std::hint::black_box;

use chrono::{Days, NaiveDate};
use criterion::{criterion_group, criterion_main, Criterion};
use padel_bff::{
    cache::{Cache, CacheKey, Kind},
    domain::{
        dashboard::{compute, Aggregate, DashboardInput, Tally},
        period::{period_range, previous_range},
        schedule::WeeklySchedule,
        slots::{court_slots, slot_bounds},
        Period, ReservationStatus,
    },
    reads::CourtSlotsValue,
};

fn schedule() -> WeeklySchedule {
    WeeklySchedule::from_rows((1..=7).map(|d| (d, 8 * 60, 23 * 60)))
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 18).unwrap()
}

/// A day of 8 courts with nine 90-minute bookings each: what one availability entry holds.
fn availability_value() -> Vec<CourtSlotsValue> {
    let bounds = slot_bounds(schedule().intervals(day()), 90);
    let busy = busy();
    (1..=8)
        .map(|court| CourtSlotsValue {
            court_id: court,
            slots: court_slots(&bounds, &busy, court == 3),
        })
        .collect()
}

fn busy() -> Vec<(u32, u32)> {
    (0..9)
        .map(|i| (480 + i * 100, 480 + i * 100 + 90))
        .collect()
}

fn slots(c: &mut Criterion) {
    let schedule = schedule();
    let busy = busy();
    c.bench_function("availability: 8 courts x 90-min slots", |b| {
        b.iter(|| {
            let bounds = slot_bounds(schedule.intervals(black_box(day())), 90);
            for court in 0..8 {
                black_box(court_slots(&bounds, &busy, court == 3));
            }
        })
    });
}

fn dashboard(c: &mut Criterion) {
    let schedule = schedule();
    let day = day();
    let current = period_range(Period::Month, day);
    let previous = previous_range(Period::Month, day);
    let courts: Vec<i64> = (1..=8).collect();
    let mut rows = Vec::new();
    for status in ReservationStatus::ALL {
        let tally = Tally {
            count: 40,
            cents: 144_000,
            minutes: 3600,
        };
        rows.push(Aggregate::Period {
            current: true,
            status,
            tally,
        });
        rows.push(Aggregate::Period {
            current: false,
            status,
            tally,
        });
        for court in &courts {
            rows.push(Aggregate::Court {
                court_id: *court,
                status,
                tally,
            });
        }
        for offset in 0..30 {
            rows.push(Aggregate::Day {
                date: current.from + Days::new(offset),
                status,
                tally,
            });
        }
    }
    rows.extend((8..23).map(|hour| Aggregate::Hour { hour, count: 30 }));
    rows.push(Aggregate::Players {
        current: true,
        count: 300,
    });
    c.bench_function("dashboard: MONTH, 8 courts, aggregation", |b| {
        b.iter(|| {
            let input = DashboardInput {
                schedule: &schedule,
                active_court_ids: &courts,
                current,
                previous,
            };
            black_box(compute(&input, black_box(&rows)))
        })
    });
}

fn keys_and_encoding(c: &mut Criterion) {
    c.bench_function("cache key: courtAvailability", |b| {
        b.iter(|| {
            black_box(CacheKey::new(
                Kind::CourtAvailability,
                &[("club", &black_box(17)), ("date", &day())],
                "courts=all;slot=90",
            ))
        })
    });
    let value = availability_value();
    let bytes = postcard::to_allocvec(&value).unwrap();
    c.bench_function("encode: availability value (postcard)", |b| {
        b.iter(|| black_box(postcard::to_allocvec(black_box(&value)).unwrap()))
    });
    c.bench_function("decode: availability value (postcard)", |b| {
        b.iter(|| {
            black_box(postcard::from_bytes::<Vec<CourtSlotsValue>>(black_box(&bytes)).unwrap())
        })
    });
}

fn l1(c: &mut Criterion) {
    let settings = padel_bff::config::Settings::load_from(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &[],
    )
    .unwrap();
    let cache = Cache::new(&settings.cache);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = CacheKey::new(
        Kind::CourtAvailability,
        &[("club", &1)],
        "courts=all;slot=90",
    );
    let value = availability_value();
    let load = |value: Vec<CourtSlotsValue>| move || async move { Ok::<_, ()>(value) };
    runtime
        .block_on(cache.get_or_load(key.clone(), vec!["club:1".into()], load(value.clone())))
        .unwrap();
    c.bench_function("L1 hit: availability value (lookup + decode)", |b| {
        b.iter(|| {
            runtime
                .block_on(cache.get_or_load(key.clone(), vec!["club:1".into()], load(Vec::new())))
                .unwrap()
        })
    });
    // A stored whole response, as the HTTP handler looks it up.
    let recording = std::sync::Arc::new(padel_bff::cache::response::Recording::default());
    runtime.block_on(padel_bff::cache::response::record(
        recording.clone(),
        async {
            cache
                .get_or_load(key.clone(), vec!["club:1".into()], load(Vec::new()))
                .await
                .unwrap()
        },
    ));
    let response_key = CacheKey::new(Kind::Response, &[("user", &7)], "{ courtAvailability }");
    let stored = padel_bff::cache::response::StoredResponse {
        requirements: Vec::new(),
        operation: "courtAvailability".into(),
        name: String::new(),
        kinds: vec!["courtAvailability".into()],
        body: serde_json::to_vec(&value).unwrap().into(),
        text: Box::default(),
    };
    assert!(cache.response_put(&response_key, &recording, stored, cache.epoch()));
    c.bench_function("L1 hit: whole response (lookup, shared bytes)", |b| {
        b.iter(|| black_box(cache.response_get(&response_key).unwrap()))
    });
}

/// The selection-order pass every executed answer goes through (`graphql::order`), on an
/// availability answer of 8 courts x 10 slots: already in order (the common case: only a check),
/// and with every object's keys reversed (a rebuild of each object).
fn order(c: &mut Criterion) {
    use async_graphql::{parser::parse_query, Name, Value};
    let document = parse_query(
        "query($c: ID!, $d: Date!) { courtAvailability(clubId: $c, date: $d) { date club { name } courts { court { id name } availableCount slots { start end available } } } }",
    )
    .unwrap();
    let object = |pairs: Vec<(&str, Value)>| {
        Value::Object(pairs.into_iter().map(|(k, v)| (Name::new(k), v)).collect())
    };
    let answer = |reversed: bool| {
        let ordered = |mut pairs: Vec<(&'static str, Value)>| {
            if reversed {
                pairs.reverse();
            }
            object(pairs)
        };
        let courts = (1..=8)
            .map(|court| {
                let slots = (0..10)
                    .map(|s| {
                        ordered(vec![
                            ("start", Value::String(format!("{:02}:00", 8 + s))),
                            ("end", Value::String(format!("{:02}:30", 9 + s))),
                            ("available", Value::Boolean(s % 3 != 0)),
                        ])
                    })
                    .collect();
                ordered(vec![
                    (
                        "court",
                        ordered(vec![
                            ("id", Value::String(court.to_string())),
                            ("name", Value::String(format!("Court {court}"))),
                        ]),
                    ),
                    ("availableCount", Value::Number(6.into())),
                    ("slots", Value::List(slots)),
                ])
            })
            .collect();
        object(vec![(
            "courtAvailability",
            ordered(vec![
                ("date", Value::String("2026-11-18".into())),
                (
                    "club",
                    ordered(vec![("name", Value::String("Club 1".into()))]),
                ),
                ("courts", Value::List(courts)),
            ]),
        )])
    };
    for (name, reversed) in [
        ("order: availability answer already in order", false),
        ("order: availability answer, every object reversed", true),
    ] {
        let data = answer(reversed);
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut data = data.clone();
                padel_bff::graphql::order::restore_operation(&mut data, &document, None);
                black_box(data)
            })
        });
    }
    c.bench_function("order: cloning the answer (the baseline of both)", |b| {
        let data = answer(false);
        b.iter(|| black_box(data.clone()))
    });
}

criterion_group!(benches, slots, dashboard, keys_and_encoding, l1, order);
criterion_main!(benches);
