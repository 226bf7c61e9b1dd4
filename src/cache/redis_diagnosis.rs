//! What `padel-bff doctor` asks the configured Redis: its version, its eviction policy, and
//! whether the invalidation channel takes a subscription. Read only.

use std::time::Duration;

use super::redis_tier::channel;
use crate::config::CacheSettings;

/// What `padel-bff doctor` learns of the configured Redis.
#[derive(Debug, Clone)]
pub struct RedisDiagnosis {
    /// The server's version, when reachable.
    pub version: Option<String>,
    /// `maxmemory-policy`, when the server lets CONFIG GET be run.
    pub eviction_policy: Option<String>,
    /// The invalidation channel's name.
    pub channel: String,
    /// Whether a subscription to it was acknowledged.
    pub subscribed: Result<(), String>,
    /// Other subscribers of the channel (gateways listening), after the doctor's own.
    pub other_subscribers: Option<i64>,
}

/// Connects to `settings.redis_url` as the gateway would, reads its version and eviction policy,
/// and subscribes to the invalidation channel (nothing is written or published).
pub async fn diagnose(
    settings: &CacheSettings,
    timeout: Duration,
) -> Result<RedisDiagnosis, String> {
    let client = redis::Client::open(settings.redis_url.as_str()).map_err(|e| e.to_string())?;
    let within = |what: &'static str| move |_| format!("{what} took longer than {timeout:?}");
    let mut connection = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(within("connecting"))?
        .map_err(|e| e.to_string())?;
    let info: String = tokio::time::timeout(
        timeout,
        redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection),
    )
    .await
    .map_err(within("INFO"))?
    .map_err(|e| e.to_string())?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string());
    let policy: Option<Vec<String>> = tokio::time::timeout(
        timeout,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut connection),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let channel = channel(&settings.key_prefix);
    let subscription = tokio::time::timeout(timeout, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    })
    .await;
    let (subscribed, pubsub) = match subscription {
        Ok(Ok(pubsub)) => (Ok(()), Some(pubsub)),
        Ok(Err(error)) => (Err(error.to_string()), None),
        Err(_) => (Err(format!("SUBSCRIBE took longer than {timeout:?}")), None),
    };
    let counted: Option<(String, i64)> = tokio::time::timeout(
        timeout,
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut connection),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let own = i64::from(pubsub.is_some());
    drop(pubsub);
    Ok(RedisDiagnosis {
        version,
        eviction_policy: policy.and_then(|p| p.into_iter().nth(1)),
        channel,
        subscribed,
        other_subscribers: counted.map(|(_, n)| (n - own).max(0)),
    })
}
