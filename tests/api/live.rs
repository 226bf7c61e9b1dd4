//! Live availability (issue 17) over `/graphql/ws` with a real websocket client
//! (tokio-tungstenite): a booking through replica A reaches a subscriber on replica B, the close
//! codes of graphql-transport-ws, subprotocol negotiation, revocation and token expiry.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

use crate::helpers::{
    eventually, shared_redis_url, spawn_app, spawn_app_with, unique_prefix, wait_for_l1, Backend,
    PrivateRedis, TestApp,
};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const LIVE: &str = "subscription($club: ID!, $date: Date!) { courtAvailabilityChanged(clubId: $club, date: $date, courtIds: [\"1\"]) { date courts { court { id } availableCount slots { start available } } } }";

/// Books court 1 at 18:00–19:00 on `$d`, and cancels a reservation.
const BOOK: &str = "mutation($d: Date!) { createReservation(input: {courtId: 1, date: $d, start: \"18:00\", end: \"19:00\"}) { id } }";
const CANCEL: &str = "mutation($id: ID!) { cancelReservation(id: $id) { id } }";

/// Opens `/graphql/ws` offering `protocols` (comma-separated, in the client's order); returns
/// the socket and the subprotocol the server answered.
async fn connect(app: &TestApp, protocols: &str) -> (Socket, String) {
    let url = format!("{}/graphql/ws", app.address.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (socket, chosen)
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next text message as JSON, or the close frame's code (as `{"close": code}`).
async fn recv(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s");
        match message {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Message::Close(frame))) => {
                return json!({"close": frame.map(|f| u16::from(f.code)).unwrap_or(0)})
            }
            Some(Ok(_)) => continue,
            Some(Err(tungstenite::Error::ConnectionClosed)) | None => return json!({"close": 0}),
            Some(Err(error)) => panic!("socket error: {error}"),
        }
    }
}

/// Subscribes `id` to [`LIVE`] (club 1 on `date`); the initial value.
async fn subscribe_live(socket: &mut Socket, id: &str, date: &str) -> Value {
    send(
        socket,
        json!({"id": id, "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}}),
    )
    .await;
    recv(socket).await
}

/// Sends `connection_init` with `token` and expects the ack.
async fn init(socket: &mut Socket, token: &str) {
    send(
        socket,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
    )
    .await;
    assert_eq!(recv(socket).await["type"], "connection_ack");
}

/// Connects, inits with `token` and expects the ack.
async fn acked(app: &TestApp, token: &str) -> Socket {
    let (mut socket, _) = connect(app, "graphql-transport-ws").await;
    init(&mut socket, token).await;
    socket
}

fn free(event: &Value) -> i64 {
    event["payload"]["data"]["courtAvailabilityChanged"]["courts"][0]["availableCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("no availability in {event}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_through_replica_a_reaches_a_subscriber_on_replica_b() {
    let redis = shared_redis_url();
    let prefix = unique_prefix();
    let a = spawn_app_with(
        Backend::Postgres,
        &[("REDIS_URL", &redis), ("BFF__CACHE__KEY_PREFIX", &prefix)],
    )
    .await;
    let b = a.replica(&[]).await;
    let player = a.token("player@demo.padel").await;
    let date = a.weekday_after(300);
    let mut socket = acked(&b, &player).await;
    let initial = subscribe_live(&mut socket, "1", &date).await;
    assert_eq!(initial["type"], "next", "{initial}");
    assert_eq!(initial["id"], "1");
    let before = free(&initial);
    a.graphql(Some(&player), BOOK, json!({"d": date}))
        .await
        .ok();
    // The change, next: nothing between the initial value and it.
    let changed = recv(&mut socket).await;
    assert_eq!(changed["type"], "next", "{changed}");
    assert!(free(&changed) < before, "{changed}");
    send(&mut socket, json!({"id": "1", "type": "complete"})).await;
    // The same operation id may be used again once completed.
    send(
        &mut socket,
        json!({"id": "1", "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}}),
    )
    .await;
    let again = recv(&mut socket).await;
    assert_eq!(free(&again), free(&changed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_membership_ends_the_subscription_with_an_error() {
    let app = spawn_app(Backend::Postgres).await;
    let player = app.token("player@demo.padel").await;
    let player_id = app.user_id("player@demo.padel").await;
    let date = app.weekday_after(301);
    let mut socket = acked(&app, &player).await;
    send(
        &mut socket,
        json!({"id": "a", "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}}),
    )
    .await;
    assert_eq!(recv(&mut socket).await["type"], "next");
    // By SQL, as the platform's backend would: the outbox brings the user's tag.
    app.execute(&format!(
        "UPDATE club_memberships SET is_active = false WHERE user_id = {player_id} AND club_id = 1"
    ))
    .await;
    let ended = recv(&mut socket).await;
    assert_eq!(ended["type"], "next", "{ended}");
    let code = ended["payload"]["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default();
    assert!(code == "NOT_FOUND" || code == "FORBIDDEN", "{ended}");
    assert_eq!(
        recv(&mut socket).await,
        json!({"type": "complete", "id": "a"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_close_code_of_the_protocol() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("BFF__SUBSCRIPTIONS__INIT_TIMEOUT", "1s")],
    )
    .await;
    let player = app.token("player@demo.padel").await;
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {player}")}});

    // No valid token: 4403.
    for payload in [json!({}), json!({"Authorization": "Bearer nope"})] {
        let (mut socket, _) = connect(&app, "graphql-transport-ws").await;
        send(
            &mut socket,
            json!({"type": "connection_init", "payload": payload}),
        )
        .await;
        assert_eq!(recv(&mut socket).await, json!({"close": 4403}), "{payload}");
    }
    // A message over `server.body_limit_bytes` (256 KiB): 1009, before it is held whole.
    let (mut socket, _) = connect(&app, "graphql-transport-ws").await;
    let big = json!({"type": "connection_init", "payload": {"pad": "x".repeat(300 * 1024)}});
    send(&mut socket, big).await;
    assert_eq!(recv(&mut socket).await, json!({"close": 1009}));
    // Pings before the init count against the message bound: 4429 (each one is answered, so a
    // flood from a client that reads nothing would pile up pongs).
    let (mut socket, _) = connect(&app, "graphql-transport-ws").await;
    for _ in 0..60 {
        if socket
            .send(Message::Ping(vec![0u8; 125].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(recv(&mut socket).await, json!({"close": 4429}));
    // A binary message before the init: 4400.
    let (mut socket, _) = connect(&app, "graphql-transport-ws").await;
    socket
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(recv(&mut socket).await, json!({"close": 4400}));
    // No init in time: 4408.
    let (mut socket, _) = connect(&app, "graphql-transport-ws").await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4408}));
    // Subscribe before the ack: 4401.
    let (mut socket, _) = connect(&app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}),
    )
    .await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4401}));
    // A second init: 4429.
    let mut socket = acked(&app, &player).await;
    send(&mut socket, init.clone()).await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4429}));
    // A duplicate operation id: 4409.
    let date = app.weekday_after(5);
    let mut socket = acked(&app, &player).await;
    let subscribe = json!({"id": "x", "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}});
    send(&mut socket, subscribe.clone()).await;
    assert_eq!(recv(&mut socket).await["type"], "next");
    send(&mut socket, subscribe).await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4409}));
    // A subscription whose first read fails: its error, then complete (not a bare complete).
    let mut socket = acked(&app, &player).await;
    send(&mut socket, json!({"id": "e", "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "99999", "date": date}}})).await;
    let failed = recv(&mut socket).await;
    assert_eq!(failed["type"], "next", "{failed}");
    assert_eq!(
        failed["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{failed}"
    );
    assert_eq!(
        recv(&mut socket).await,
        json!({"type": "complete", "id": "e"})
    );
    // An operation id over 128 bytes: 4400.
    send(&mut socket, json!({"id": "x".repeat(129), "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}})).await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4400}));
    // Not the protocol: 4400.
    let mut socket = acked(&app, &player).await;
    send(&mut socket, json!({"type": "bogus"})).await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4400}));
    // A query over the socket is one event, then complete; ping gets pong.
    let mut socket = acked(&app, &player).await;
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut socket).await["type"], "pong");
    send(&mut socket, json!({"id": "q", "type": "subscribe", "payload": {"query": "{ authContext { user { email } } }"}})).await;
    let answer = recv(&mut socket).await;
    assert_eq!(
        answer["payload"]["data"]["authContext"]["user"]["email"],
        "player@demo.padel"
    );
    assert_eq!(
        recv(&mut socket).await,
        json!({"type": "complete", "id": "q"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answered_subprotocol_is_the_one_spoken() {
    let app = spawn_app(Backend::Sqlite).await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(6);
    // Both offered, the legacy one first (as Python gql does): the server answers the current
    // one and speaks it (`ping` → `pong`, `next`).
    let (mut socket, chosen) = connect(&app, "graphql-ws, graphql-transport-ws").await;
    assert_eq!(chosen, "graphql-transport-ws");
    send(&mut socket, json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {player}")}})).await;
    assert_eq!(recv(&mut socket).await["type"], "connection_ack");
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut socket).await["type"], "pong");
    send(&mut socket, json!({"id": "1", "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}})).await;
    assert_eq!(recv(&mut socket).await["type"], "next");
    // Only the legacy one: answered and spoken (`start` → `data`).
    let (mut socket, chosen) = connect(&app, "graphql-ws").await;
    assert_eq!(chosen, "graphql-ws");
    send(&mut socket, json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {player}")}})).await;
    assert_eq!(recv(&mut socket).await["type"], "connection_ack");
    send(&mut socket, json!({"id": "1", "type": "start", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}})).await;
    let event = recv(&mut socket).await;
    assert_eq!(event["type"], "data", "{event}");
    assert!(free(&event) >= 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_closes_when_the_token_expires() {
    let app = spawn_app_with(Backend::Sqlite, &[("BFF__AUTH__LEEWAY", "0s")]).await;
    let short = app
        .token_for("player@demo.padel", Duration::from_secs(2))
        .await;
    let started = std::time::Instant::now();
    let mut socket = acked(&app, &short).await;
    assert_eq!(recv(&mut socket).await, json!({"close": 4403}));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed at expiry, not at once"
    );
}

/// The parts of a multipart body read so far: the JSON of each part after the first boundary.
fn multipart_parts(body: &str) -> Vec<Value> {
    body.split("\r\n--graphql")
        .filter_map(|part| part.split_once("\r\n\r\n").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str(json.trim_end_matches("--\r\n").trim()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_subscriptions_deliver_the_initial_value_then_the_change() {
    let redis = shared_redis_url();
    let prefix = unique_prefix();
    let a = spawn_app_with(
        Backend::Postgres,
        &[("REDIS_URL", &redis), ("BFF__CACHE__KEY_PREFIX", &prefix)],
    )
    .await;
    let b = a.replica(&[]).await;
    let player = a.token("player@demo.padel").await;
    let date = a.weekday_after(302);
    let mut response = b
        .client
        .post(format!("{}/graphql", b.address))
        .bearer_auth(&player)
        .header(
            "accept",
            "multipart/mixed;subscriptionSpec=1.0, application/json",
        )
        .json(&json!({"query": LIVE, "variables": {"club": "1", "date": date}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("multipart/mixed"),
        "{content_type}"
    );
    assert!(
        content_type.contains("boundary=\"graphql\""),
        "{content_type}"
    );
    let mut body = String::new();
    let payloads = |body: &str| -> Vec<Value> {
        multipart_parts(body)
            .into_iter()
            .filter(|p| p.get("payload").is_some())
            .collect()
    };
    while payloads(&body).is_empty() {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("the initial value within 20 s")
            .unwrap()
            .expect("the body goes on");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let initial = payloads(&body)[0].clone();
    let before = initial["payload"]["data"]["courtAvailabilityChanged"]["courts"][0]
        ["availableCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("{initial}"));
    a.graphql(Some(&player), BOOK, json!({"d": date}))
        .await
        .ok();
    while payloads(&body).len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("the change within 20 s")
            .unwrap()
            .expect("the body goes on");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = payloads(&body);
    let after = events[1]["payload"]["data"]["courtAvailabilityChanged"]["courts"][0]
        ["availableCount"]
        .as_i64()
        .unwrap();
    assert!(after < before, "{body}");
    // A subscription without the multipart Accept is refused with a pointer.
    let plain = b
        .graphql(Some(&player), LIVE, json!({"club": "1", "date": date}))
        .await;
    assert_eq!(plain.code(), "BAD_USER_INPUT");
}

/// A counter of the gateway's `/metrics` (0 when not exported yet).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_of_one_topic_cost_one_read_and_one_rendering_per_change() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__SUBSCRIPTIONS__MAX_PER_CONNECTION", "1000"),
            ("BFF__SUBSCRIPTIONS__MAX_MESSAGES_PER_SECOND", "100000"),
            ("BFF__RATE_LIMIT__ENABLED", "false"),
        ],
    )
    .await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(303);
    let mut socket = acked(&app, &player).await;
    let variables = json!({"club": "1", "date": date});
    for id in 0..1000 {
        send(
            &mut socket,
            json!({"id": id.to_string(), "type": "subscribe", "payload": {"query": LIVE, "variables": variables}}),
        )
        .await;
    }
    let mut initial = std::collections::HashSet::new();
    while initial.len() < 1000 {
        let event = recv(&mut socket).await;
        assert_eq!(event["type"], "next", "{event}");
        initial.insert(event["id"].as_str().unwrap().to_string());
    }
    let renders = metric(&app, "graphql_server_subscription_renders_total").await;
    let loads = app.cache_stat("courtAvailability", "misses").await;
    app.graphql(Some(&player), BOOK, json!({"d": date}))
        .await
        .ok();
    let mut changed = std::collections::HashSet::new();
    while changed.len() < 1000 {
        let event = recv(&mut socket).await;
        assert_eq!(event["type"], "next", "{event}");
        assert!(free(&event) >= 0);
        changed.insert(event["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        metric(&app, "graphql_server_subscription_renders_total").await - renders,
        1.0,
        "one rendering for 1 000 subscribers"
    );
    assert_eq!(
        app.cache_stat("courtAvailability", "misses").await - loads,
        1,
        "one read (one SQL statement)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_every_subscription_then_closes_the_socket() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(7);
    let mut socket = acked(&app, &player).await;
    for id in ["1", "2"] {
        send(
            &mut socket,
            json!({"id": id, "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}}),
        )
        .await;
        assert_eq!(recv(&mut socket).await["type"], "next");
    }
    app.stop();
    let mut completed = Vec::new();
    for _ in 0..2 {
        let message = recv(&mut socket).await;
        assert_eq!(message["type"], "complete", "{message}");
        completed.push(message["id"].as_str().unwrap().to_string());
    }
    completed.sort();
    assert_eq!(completed, ["1", "2"]);
    assert_eq!(recv(&mut socket).await, json!({"close": 1001}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bound_refuses_with_its_code() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__SUBSCRIPTIONS__MAX_CONNECTIONS_PER_USER", "1"),
            ("BFF__SUBSCRIPTIONS__MAX_PER_CONNECTION", "1"),
            ("BFF__SUBSCRIPTIONS__MAX_MESSAGES_PER_SECOND", "5"),
        ],
    )
    .await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(8);
    let subscribe = |id: &str| json!({"id": id, "type": "subscribe", "payload": {"query": LIVE, "variables": {"club": "1", "date": date}}});
    let mut first = acked(&app, &player).await;
    // A second socket of the same user: 4429 after its init.
    let (mut second, _) = connect(&app, "graphql-transport-ws").await;
    send(
        &mut second,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {player}")}}),
    )
    .await;
    assert_eq!(recv(&mut second).await, json!({"close": 4429}));
    // One subscription per socket: the second is an error coded RATE_LIMITED, the socket stays.
    send(&mut first, subscribe("a")).await;
    assert_eq!(recv(&mut first).await["type"], "next");
    send(&mut first, subscribe("b")).await;
    let refused = recv(&mut first).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "b");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    // More messages in a second than allowed: 4429.
    // The server may close before the last ones are written: a refused write is expected.
    for _ in 0..10 {
        let ping = Message::Text(json!({"type": "ping"}).to_string().into());
        if first.send(ping).await.is_err() {
            break;
        }
    }
    let mut closed = None;
    for _ in 0..12 {
        let message = recv(&mut first).await;
        if message.get("close").is_some() {
            closed = Some(message);
            break;
        }
    }
    assert_eq!(closed, Some(json!({"close": 4429})));
}

/// The kernel's largest TCP send buffer (`tcp_wmem`'s third value; 4 MB here).
fn send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

/// A socket whose client reads nothing while changes pour in: its kernel receive buffer is kept
/// small, so the server's writer fills up quickly.
async fn slow_socket(app: &TestApp, token: &str) -> Socket {
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(address).await.unwrap();
    let url = format!("{}/graphql/ws", app.address.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    init(&mut socket, token).await;
    socket
}

/// Every court of club 1 in 15-minute slots, so that each event is ~20 KB: the kernel's socket
/// buffers (up to 4 MB of send buffer) cannot hide a queue of hundreds of them.
const LIVE_ALL_COURTS: &str = "subscription($club: ID!, $date: Date!) { courtAvailabilityChanged(clubId: $club, date: $date, slotMinutes: 15) { date courts { court { id name } availableCount slots { start end available } } } }";

fn free_total(event: &Value) -> i64 {
    event["payload"]["data"]["courtAvailabilityChanged"]["courts"]
        .as_array()
        .unwrap_or_else(|| panic!("no availability in {event}"))
        .iter()
        .map(|c| c["availableCount"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_newest_value_not_a_queue_of_every_change() {
    // 400 bookings and cancellations in a few seconds: past the mutation rate limit.
    let app = spawn_app_with(Backend::Sqlite, &[("BFF__RATE_LIMIT__ENABLED", "false")]).await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(301);
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": LIVE_ALL_COURTS, "variables": {"club": "1", "date": date}}});
    let mut slow = slow_socket(&app, &player).await;
    send(&mut slow, subscribe.clone()).await;
    let initial = recv(&mut slow).await;
    let before = free_total(&initial);
    // A reader that keeps up, for comparison.
    let mut fast = acked(&app, &player).await;
    send(&mut fast, subscribe).await;
    assert_eq!(free_total(&recv(&mut fast).await), before);
    // 399 changes, a booking and its cancellation again and again (the last one stays booked),
    // each one seen by the reader that keeps up before the next is made: every change is an
    // event of its own, and the slow reader's share piles up.
    // Enough ~20 KB events to outgrow the kernel's largest send buffer (4 MB here), on any host.
    let wmem_max = send_buffer_max();
    let rounds = (wmem_max / 20_000).max(200);
    let mut fast_seen = 0;
    let mut fast_last = Value::Null;
    for round in 0..rounds {
        let booked = app.graphql(Some(&player), BOOK, json!({"d": date})).await;
        let id = booked.ok()["createReservation"]["id"].clone();
        fast_last = recv(&mut fast).await;
        fast_seen += 1;
        if round + 1 < rounds {
            app.graphql(Some(&player), CANCEL, json!({"id": id}))
                .await
                .ok();
            fast_last = recv(&mut fast).await;
            fast_seen += 1;
        }
    }
    // Now the slow reader reads: what was queued for it, then the newest value.
    let mut received = 0;
    let mut last = Value::Null;
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_secs(5), slow.next()).await
    {
        received += 1;
        last = serde_json::from_str(text.as_str()).unwrap();
    }
    // The newest value: the one booking left (four 15-minute slots), exactly what the reader that
    // kept up saw last.
    assert_eq!(free_total(&last), before - 4, "the newest value");
    assert_eq!(last["payload"], fast_last["payload"]);
    eprintln!(
        "slow reader: {received} events, fast reader: {fast_seen}, for {} changes",
        2 * rounds - 1
    );
    let coalesced = metric(
        &app,
        "graphql_server_subscription_events_total{outcome=\"coalesced\"",
    )
    .await;
    // Here: 204 of 399. What the kernel holds is at most about half; a queue would be all of it.
    assert!(
        received * 4 < fast_seen * 3,
        "a slow reader got {received} events (the fast one {fast_seen}): a queue, not the newest value"
    );
    assert!(coalesced > 0.0, "nothing was counted as coalesced");
}

/// Polls `/readyz` on `app` until its status is `wanted` (`ready`, `degraded`).
async fn until_readiness(app: &TestApp, wanted: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("/readyz never said {wanted}"),
        || async {
            let reply: Value = app
                .client
                .get(format!("{}/readyz", app.address))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if reply["status"] == wanted {
                Ok(())
            } else {
                Err(reply["status"].clone())
            }
        },
    )
    .await
}

/// Redis killed under a subscription on replica B, then brought back: the subscription never
/// fails. Meanwhile a booking through replica A still reaches it (the Postgres outbox); when
/// Redis is back, B re-reads and sends the current value, changed or not; and pub/sub carries the
/// next booking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_marks_subscriptions_stale_and_its_return_resends_the_current_value() {
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("BFF__CACHE__KEY_PREFIX", &prefix),
    ];
    let a = spawn_app_with(Backend::Postgres, &env).await;
    let b = a.replica(&[]).await;
    wait_for_l1(&b).await;
    let player = a.token("player@demo.padel").await;
    let date = a.weekday_after(303);
    let mut socket = acked(&b, &player).await;
    let initial = subscribe_live(&mut socket, "r", &date).await;
    let before = free(&initial);
    let book = |start: &str, end: &str| {
        format!("mutation($d: Date!) {{ createReservation(input: {{courtId: 1, date: $d, start: \"{start}\", end: \"{end}\"}}) {{ id }} }}")
    };

    redis.kill();
    until_readiness(&b, "degraded").await;
    a.graphql(Some(&player), &book("18:00", "19:00"), json!({"d": date}))
        .await
        .ok();
    // Without Redis the outbox still tells B; nothing but values arrives meanwhile.
    let during = recv(&mut socket).await;
    assert_eq!(during["type"], "next", "{during}");
    assert!(during["payload"].get("errors").is_none(), "{during}");
    assert!(
        free(&during) < before,
        "the booking made during the outage: {during}"
    );

    redis.spawn();
    // Back: the current value again, though it did not change since the last event.
    let resent = recv(&mut socket).await;
    assert_eq!(resent["type"], "next", "{resent}");
    assert_eq!(resent["payload"], during["payload"], "the current value");
    until_readiness(&b, "ready").await;
    a.graphql(Some(&player), &book("20:00", "21:00"), json!({"d": date}))
        .await
        .ok();
    let after = loop {
        let event = recv(&mut socket).await;
        assert_eq!(event["type"], "next", "{event}");
        if free(&event) < free(&during) {
            break event;
        }
        // Another re-read on the way back (the breaker's recovery) sends the same value.
        assert_eq!(event["payload"], during["payload"], "{event}");
    };
    assert!(after["payload"].get("errors").is_none(), "{after}");
}

/// A selection that asks for the caller (`organization { clubs }` lists the clubs the caller can
/// see) makes the topic personal: each subscriber runs its own stream (in a task of its own), sees
/// its own clubs, and gets the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_that_asks_for_the_caller_is_answered_per_subscriber() {
    let app = spawn_app(Backend::Postgres).await;
    let date = app.weekday_after(304);
    let query = "subscription($club: ID!, $date: Date!) { courtAvailabilityChanged(clubId: $club, date: $date, courtIds: [\"1\"]) { club { organization { clubs { id } } } courts { court { id } availableCount } } }";
    let subscribe = json!({"id": "p", "type": "subscribe", "payload": {"query": query, "variables": {"club": "1", "date": date}}});
    let clubs = |event: &Value| {
        event["payload"]["data"]["courtAvailabilityChanged"]["club"]["organization"]["clubs"]
            .as_array()
            .unwrap_or_else(|| panic!("no clubs in {event}"))
            .len()
    };
    let mut seen = Vec::new();
    let mut sockets = Vec::new();
    // The manager sees the one club they manage; the owner both clubs of the organization.
    for who in ["manager@demo.padel", "owner@demo.padel"] {
        let token = app.token(who).await;
        let mut socket = acked(&app, &token).await;
        send(&mut socket, subscribe.clone()).await;
        let initial = recv(&mut socket).await;
        assert_eq!(initial["type"], "next", "{who}: {initial}");
        seen.push((clubs(&initial), free(&initial)));
        sockets.push(socket);
    }
    assert!(seen[0].0 < seen[1].0, "each caller's own clubs: {seen:?}");
    let player = app.token("player@demo.padel").await;
    app.graphql(Some(&player), BOOK, json!({"d": date}))
        .await
        .ok();
    for (socket, (clubs_before, free_before)) in sockets.iter_mut().zip(&seen) {
        let changed = recv(socket).await;
        assert_eq!(changed["type"], "next", "{changed}");
        assert!(free(&changed) < *free_before, "{changed}");
        assert_eq!(clubs(&changed), *clubs_before, "{changed}");
    }
}

/// SIGTERM while a client has stopped reading and the gateway's write to it waits: the gateway
/// still shuts down at once (the `complete`s and the close frame get a bounded time), not at the
/// end of `server.shutdown_grace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stopped_reading_does_not_hold_up_shutdown() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__RATE_LIMIT__ENABLED", "false"),
            ("BFF__SERVER__SHUTDOWN_GRACE", "120s"),
        ],
    )
    .await;
    let player = app.token("player@demo.padel").await;
    let date = app.weekday_after(302);
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": LIVE_ALL_COURTS, "variables": {"club": "1", "date": date}}});
    let mut stuck = slow_socket(&app, &player).await;
    send(&mut stuck, subscribe.clone()).await;
    recv(&mut stuck).await;
    let mut fast = acked(&app, &player).await;
    send(&mut fast, subscribe).await;
    recv(&mut fast).await;
    // ~20 KB events, one per change (the reader that keeps up paces them), until more than the
    // kernel's largest send buffer waits for the client that reads nothing.
    let wmem_max = send_buffer_max();
    for _ in 0..(wmem_max / 20_000).max(200) {
        let booked = app.graphql(Some(&player), BOOK, json!({"d": date})).await;
        let id = booked.ok()["createReservation"]["id"].clone();
        recv(&mut fast).await;
        app.graphql(Some(&player), CANCEL, json!({"id": id}))
            .await
            .ok();
        recv(&mut fast).await;
    }
    let started = std::time::Instant::now();
    assert!(
        app.stop_and_wait(Duration::from_secs(30)).await,
        "the gateway was still shutting down after 30 s (grace 120 s)"
    );
    eprintln!("shut down in {:?}", started.elapsed());
    // The reader that kept up got its complete and the close.
    assert_eq!(
        recv(&mut fast).await,
        json!({"type": "complete", "id": "1"})
    );
    assert_eq!(recv(&mut fast).await, json!({"close": 1001}));
    drop(stuck);
}
