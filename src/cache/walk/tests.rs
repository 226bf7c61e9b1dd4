//! Unit tests of the read path: single flight, invalidation, stale windows on the clock.

use std::{sync::atomic::Ordering, time::Duration};

use super::*;
use crate::{cache::tags, clock::Clock, config::CacheSettings};

fn settings() -> CacheSettings {
    crate::config::Settings::load_from(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &[],
    )
    .unwrap()
    .cache
}

#[tokio::test]
async fn concurrent_misses_run_one_load_and_later_reads_hit_l1() {
    let cache = Cache::new(&settings());
    let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let loads = loads.clone();
        tasks.push(tokio::spawn(async move {
            let key = CacheKey::new(Kind::Club, &[("club", &1)], "");
            cache
                .get_or_load(key, vec![tags::club(1)], move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, ()>(42u32)
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().0, 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let key = CacheKey::new(Kind::Club, &[("club", &1)], "");
    let (_, outcome) = cache
        .get_or_load(key, vec![tags::club(1)], || async { Ok::<u32, ()>(0) })
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::L1Hit);
}

#[tokio::test]
async fn invalidating_a_tag_drops_its_entries_and_nothing_else() {
    let cache = Cache::new(&settings());
    let key = |club: i64| CacheKey::new(Kind::Club, &[("club", &club)], "");
    for club in [1, 2] {
        cache
            .get_or_load(key(club), vec![tags::club(club)], move || async move {
                Ok::<i64, ()>(club)
            })
            .await
            .unwrap();
    }
    cache.invalidate(&[tags::club(1)]).await;
    let (v1, o1) = cache
        .get_or_load(key(1), vec![tags::club(1)], || async { Ok::<i64, ()>(10) })
        .await
        .unwrap();
    let (v2, o2) = cache
        .get_or_load(key(2), vec![tags::club(2)], || async { Ok::<i64, ()>(20) })
        .await
        .unwrap();
    assert_eq!((v1, o1), (10, Outcome::Miss));
    assert_eq!((v2, o2), (2, Outcome::L1Hit));
}

#[tokio::test]
async fn a_load_that_races_an_invalidation_is_never_served() {
    let cache = Cache::new(&settings());
    let key = CacheKey::new(Kind::Club, &[("club", &5)], "");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let slow = {
        let cache = cache.clone();
        let key = key.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(key, vec![tags::club(5)], move || async move {
                    rx.await.ok();
                    Ok::<String, ()>("stale".into())
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    cache.invalidate(&[tags::club(5)]).await;
    tx.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap().0, "stale"); // the racing caller gets its own load
    let (value, outcome) = cache
        .get_or_load(key, vec![tags::club(5)], || async {
            Ok::<String, ()>("fresh".into())
        })
        .await
        .unwrap();
    assert_eq!((value.as_str(), outcome), ("fresh", Outcome::Miss));
}

#[tokio::test]
async fn errors_are_not_cached_and_stale_values_cover_them_within_the_age() {
    let mut s = settings();
    s.club.ttl = Duration::from_millis(30);
    s.club.stale_if_error = Duration::from_secs(60);
    s.ttl_jitter = 0.0;
    let cache = Cache::new(&s);
    let key = CacheKey::new(Kind::Club, &[("club", &9)], "");
    let failing = || async { Err::<u8, &str>("db down") };
    let error = cache.get_or_load(key.clone(), vec![], failing).await;
    assert_eq!(error.unwrap_err(), "db down");
    cache
        .get_or_load(key.clone(), vec![], || async { Ok::<u8, &str>(7) })
        .await
        .unwrap();
    cache.clock().advance(Duration::from_millis(60));
    let (value, outcome) = cache
        .get_or_load(key.clone(), vec![], failing)
        .await
        .unwrap();
    assert_eq!((value, outcome), (7, Outcome::StaleIfError));
    // Past the stale-if-error age the entry is gone: the error comes through.
    cache.clock().advance(Duration::from_secs(60));
    let error = cache.get_or_load(key, vec![], failing).await;
    assert_eq!(error.unwrap_err(), "db down");
}

#[tokio::test]
async fn an_expired_value_is_served_while_one_refresh_runs_then_the_refresh_is_fresh() {
    let mut s = settings();
    s.dashboard.ttl = Duration::from_secs(1);
    s.dashboard.stale_while_revalidate = Duration::from_secs(30);
    s.dashboard.stale_if_error = Duration::ZERO;
    s.ttl_jitter = 0.0;
    let clock = Clock::system();
    let cache = Cache::with_clock(&s, clock.clone());
    let key = CacheKey::new(Kind::Dashboard, &[("club", &1)], "");
    let read = |n: u8| {
        let (cache, key) = (cache.clone(), key.clone());
        async move {
            cache
                .get_or_load(key, vec![], move || async move { Ok::<u8, ()>(n) })
                .await
                .unwrap()
        }
    };
    assert_eq!(read(1).await, (1, Outcome::Miss));
    assert_eq!(read(2).await, (1, Outcome::L1Hit));
    clock.advance(Duration::from_millis(1_200));
    assert_eq!(read(3).await, (1, Outcome::StaleWhileRevalidate));
    // The refresh (a task of its own) lands, fresh on the advanced clock.
    let mut landed = read(4).await;
    for _ in 0..100 {
        if landed.1 == Outcome::L1Hit {
            break;
        }
        tokio::task::yield_now().await;
        landed = read(4).await;
    }
    assert_eq!(landed, (3, Outcome::L1Hit));
    // Past both windows nothing is served: a plain miss.
    clock.advance(Duration::from_secs(32));
    assert_eq!(read(5).await, (5, Outcome::Miss));
}

#[tokio::test]
async fn a_kind_that_keeps_nothing_is_loaded_every_time_and_never_stored() {
    let mut s = settings();
    s.court_availability.ttl = Duration::ZERO;
    s.court_availability.stale_while_revalidate = Duration::ZERO;
    s.court_availability.stale_if_error = Duration::ZERO;
    let cache = Cache::new(&s);
    let key = CacheKey::new(Kind::CourtAvailability, &[("club", &1)], "");
    for n in 0..3u8 {
        let (value, outcome) = cache
            .get_or_load(key.clone(), vec![], move || async move { Ok::<u8, ()>(n) })
            .await
            .unwrap();
        assert_eq!((value, outcome), (n, Outcome::Bypass));
    }
    assert!(cache.l1_get(key.as_str()).is_none());
    // Any window at all keeps the value.
    s.court_availability.stale_if_error = Duration::from_secs(1);
    let cache = Cache::new(&s);
    cache
        .get_or_load(key.clone(), vec![], || async { Ok::<u8, ()>(1) })
        .await
        .unwrap();
    assert!(cache.l1_get(key.as_str()).is_some());
}
