//! Micro-benchmarks of the pure hot paths: slot computation and dashboard aggregation.
//!
//! `cargo bench --bench domain` prints ns per call, best of five rounds. Without `--bench`
//! (as under `cargo test --all-targets`) each case runs once, as a smoke test.

use std::{hint::black_box, time::Instant};

use chrono::{Days, NaiveDate};
use padel_bff::domain::{
    dashboard::{compute, Aggregate, DashboardInput, Tally},
    period::{period_range, previous_range},
    schedule::WeeklySchedule,
    slots::{court_slots, slot_bounds},
    Period, ReservationStatus,
};

fn measure(name: &str, measuring: bool, mut f: impl FnMut()) {
    if !measuring {
        f();
        println!("{name}: ok (smoke run)");
        return;
    }
    let iterations = 20_000;
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name:<40} {best:>10.0} ns/call");
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let schedule = WeeklySchedule::from_rows((1..=7).map(|d| (d, 8 * 60, 23 * 60)));
    let day = NaiveDate::from_ymd_opt(2026, 11, 18).unwrap();
    let busy: Vec<(u32, u32)> = (0..9)
        .map(|i| (480 + i * 100, 480 + i * 100 + 90))
        .collect();

    measure("availability: 8 courts x 90-min slots", measuring, || {
        let bounds = slot_bounds(schedule.intervals(black_box(day)), 90);
        for court in 0..8 {
            black_box(court_slots(&bounds, &busy, court == 3));
        }
    });

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
    measure("dashboard: MONTH, 8 courts, aggregation", measuring, || {
        let input = DashboardInput {
            schedule: &schedule,
            active_court_ids: &courts,
            current,
            previous,
        };
        black_box(compute(&input, black_box(&rows)));
    });
}
