//! Live availability under load (issue 17): N subscribers of one club's grid spread over two
//! replicas (websockets, graphql-transport-ws), bookings through replica A, and for every
//! subscriber the time from the booking's request to its event. Also the gateways' CPU per
//! delivered event (both processes, from /proc).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::{cpu_ticks, token, Server};

/// Subscriptions per socket: `BENCH_LIVE_PER_SOCKET`, by default the gateway's own bound
/// (`subscriptions.max_per_connection`, 20), so that 10 000 subscribers are 500 sockets.
fn per_socket() -> usize {
    std::env::var("BENCH_LIVE_PER_SOCKET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Runs the scenario for each subscriber count; one JSON object per count.
pub async fn run(database: &str, redis: &str, first_day: chrono::NaiveDate) -> Value {
    let limits = [
        (
            "BFF__SUBSCRIPTIONS__MAX_PER_CONNECTION",
            per_socket().to_string(),
        ),
        (
            "BFF__SUBSCRIPTIONS__MAX_CONNECTIONS_PER_IP",
            "100000".to_string(),
        ),
        (
            "BFF__SUBSCRIPTIONS__MAX_MESSAGES_PER_SECOND",
            "100000".to_string(),
        ),
        (
            "BFF__SUBSCRIPTIONS__MAX_CONNECTIONS_PER_USER",
            "1000".to_string(),
        ),
        ("BFF__LIMITS__DATE_DAYS_AHEAD", "90000".to_string()),
    ];
    let a = Server::start(database, redis, &limits);
    let b = Server::start(database, redis, &limits);
    let pool = sqlx::PgPool::connect(database)
        .await
        .expect("bench database");
    // Players of club 1 (subscribers look like its players).
    let players: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM club_memberships WHERE club_id = 1 AND role = 'player' AND is_active ORDER BY user_id LIMIT 40",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // Ten free 90-minute slots a court: six courts for the 60 bookings.
    let courts: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM courts WHERE club_id = 1 AND is_active AND NOT is_maintenance ORDER BY id LIMIT 6",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let date = {
        use chrono::Datelike;
        let mut day = first_day;
        while day.weekday().number_from_monday() > 5 {
            day = day.succ_opt().unwrap();
        }
        day.to_string()
    };
    let mut report = serde_json::Map::new();
    let mut bookings: i32 = 0;
    for (subscribers, changes) in [(1_000usize, 20usize), (10_000, 38)] {
        let sockets = subscribers / per_socket();
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        let mut tasks = Vec::new();
        for s in 0..sockets {
            let base = if s % 2 == 0 { &a.base } else { &b.base };
            let user = players[s % players.len()];
            let socket = open(base, &token(user)).await;
            tasks.push(tokio::spawn(listen(
                socket,
                s,
                date.clone(),
                sender.clone(),
            )));
        }
        // Every subscriber's initial value.
        let mut initial = 0;
        while initial < subscribers {
            tokio::time::timeout(Duration::from_secs(60), received.recv())
                .await
                .expect("initial values within 60 s")
                .unwrap();
            initial += 1;
        }
        let client = reqwest::Client::new();
        let mut latencies = Vec::with_capacity(subscribers * changes);
        // Booking 0 warms up: the first burst after subscribing also grows every socket's send
        // buffer (TCP autotuning) and the writers' buffers. It is reported, not counted.
        let mut warm_up_ms = 0.0;
        let mut ticks = 0;
        for round in 0..=changes {
            if round == 1 {
                warm_up_ms = latencies.iter().copied().fold(0.0, f64::max);
                latencies.clear();
                ticks = cpu_ticks(a.child.id()) + cpu_ticks(b.child.id());
            }
            // One 90-minute slot each (08:00 + 90 k): every booking changes the grid.
            let start = 480 + 90 * (bookings % 10);
            let court = courts[(bookings / 10) as usize % courts.len()];
            bookings += 1;
            let hhmm = |m: i32| format!("{:02}:{:02}", m / 60, m % 60);
            let booked = Instant::now();
            let reply: Value = client
                .post(format!("{}/graphql", a.base))
                .bearer_auth(token(1))
                .json(&json!({
                    "query": "mutation($i: CreateReservationInput!) { createReservation(input: $i) { id } }",
                    "variables": {"i": {"courtId": court.to_string(), "date": date, "start": hhmm(start), "end": hhmm(start + 90)}},
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(reply.get("errors").is_none(), "booking failed: {reply}");
            let mut delivered = 0;
            let first_index = latencies.len();
            while delivered < subscribers {
                let (_, at) = tokio::time::timeout(Duration::from_secs(30), received.recv())
                    .await
                    .expect("every subscriber's event within 30 s")
                    .unwrap();
                latencies.push(at.saturating_duration_since(booked).as_secs_f64() * 1000.0);
                delivered += 1;
            }
            if std::env::var("BENCH_LIVE_DETAIL").is_ok() {
                let these = &latencies[first_index..];
                let max = these.iter().copied().fold(0.0, f64::max);
                let min = these.iter().copied().fold(f64::MAX, f64::min);
                let what = if round == 0 {
                    "warm-up booking"
                } else {
                    "booking"
                };
                println!("  {what}: first {min:.1} ms, last {max:.1} ms");
            }
        }
        let cpu_ticks_used = cpu_ticks(a.child.id()) + cpu_ticks(b.child.id()) - ticks;
        // Both gateways' resident memory with every subscriber still connected.
        let rss_mib = (rss_kib(a.child.id()) + rss_kib(b.child.id())) as f64 / 1024.0;
        for task in tasks {
            task.abort();
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        // USER_HZ is 100 on Linux: a tick is 10 ms.
        let cpu_us = cpu_ticks_used as f64 * 10_000.0 / latencies.len() as f64;
        println!(
            "live: {subscribers} subscribers over 2 replicas ({} a socket), {changes} bookings: booking -> delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {cpu_us:.1} µs of gateway CPU per delivered event (warm-up booking before them: last delivery {warm_up_ms:.1} ms); gateways' RSS {rss_mib:.0} MiB",
            per_socket(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        report.insert(
            format!("{subscribers} subscribers"),
            json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0), "events": latencies.len(), "cpu_us_per_event": cpu_us, "warm_up_max_ms": warm_up_ms, "rss_mib": rss_mib, "per_socket": per_socket()}),
        );
    }
    sqlx::query("DELETE FROM reservations WHERE club_id = 1 AND date = CAST($1 AS DATE)")
        .bind(&date)
        .execute(&pool)
        .await
        .unwrap();
    Value::Object(report)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket past its `connection_ack`.
async fn open(base: &str, token: &str) -> Socket {
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.as_str().contains("connection_ack") => socket,
        other => panic!("no ack: {other:?}"),
    }
}

/// Subscribes [`per_socket`] times and reports the arrival of every `next`.
async fn listen(
    mut socket: Socket,
    index: usize,
    date: String,
    arrivals: tokio::sync::mpsc::UnboundedSender<(usize, Instant)>,
) {
    let query = "subscription($d: Date!) { courtAvailabilityChanged(clubId: 1, date: $d) { courts { court { id } availableCount slots { start available } } } }";
    for id in 0..per_socket() {
        let subscribe = json!({"id": id.to_string(), "type": "subscribe", "payload": {"query": query, "variables": {"d": date}}});
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
    }
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            if text.as_str().starts_with(r#"{"type":"next""#) {
                let _ = arrivals.send((index, Instant::now()));
            }
        }
    }
}

/// A process's resident set (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
