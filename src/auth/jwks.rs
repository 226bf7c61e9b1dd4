//! Public keys from an identity provider's JWKS URL, for RS256/ES256 tokens.
//!
//! Keys are fetched once, kept for `auth.jwks_refresh_interval`, and fetched again early only when a
//! token names a `kid` we do not know (key rotation), at most once per
//! `auth.jwks_min_refresh_interval`: a flood of tokens with made-up `kid`s costs the provider one
//! request per interval, never one per request. Concurrent refreshes collapse into one.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
    Algorithm, DecodingKey,
};

use crate::config::AuthSettings;

/// One verification key and the only algorithm it may verify (RFC 8725 §3.1: the key decides the
/// algorithm, never the token's header).
#[derive(Clone)]
pub struct VerificationKey {
    /// RS256 for RSA keys, ES256 for P-256 keys.
    pub algorithm: Algorithm,
    /// The decoded public key.
    pub key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, VerificationKey>,
    fetched_at: Option<Instant>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<bytes::Bytes>>;

/// The JWKS client and its cached key set.
pub struct Jwks {
    url: String,
    client: HttpsClient,
    timeout: Duration,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    keys: RwLock<KeySet>,
    last_attempt: std::sync::Mutex<Option<Instant>>,
    /// The gateway's clock, for both intervals (tests advance it).
    clock: crate::clock::Clock,
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl Jwks {
    /// A client for `settings.jwks_url`; nothing is fetched until the first token (or [`Jwks::prefetch`]).
    pub fn new(settings: &AuthSettings, clock: crate::clock::Clock) -> Arc<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder.https_or_http().enable_http1().build(),
            Err(error) => {
                // No CA certificates on this machine: https:// URLs will fail with a clear log
                // line on every attempt; http:// (a sidecar, tests) still works.
                tracing::error!(%error, "no CA certificates found (install ca-certificates); JWKS over https will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_or_http()
                    .enable_http1()
                    .build()
            }
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Arc::new(Jwks {
            url: settings.jwks_url.clone(),
            client,
            timeout: settings.jwks_timeout,
            refresh_interval: settings.jwks_refresh_interval,
            min_refresh_interval: settings.jwks_min_refresh_interval,
            keys: RwLock::new(KeySet::default()),
            last_attempt: std::sync::Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            clock,
        })
    }

    /// How many times the key set was requested from the provider (tests and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the key set at start so the first requests do not wait for it; failure is logged
    /// and retried on demand.
    pub async fn prefetch(&self) {
        if let Err(error) = self.refresh_now().await {
            tracing::warn!(url = %self.url, %error, "JWKS not reachable at start; retrying on demand");
            // The first token may try again at once: a failed start costs no interval.
            *self.last_attempt.lock().expect("JWKS lock") = None;
        }
    }

    /// The key for `kid`, refreshing the set when it is stale or (rate-limited) when `kid` is
    /// unknown. `kid: None` matches only when the set holds exactly one key for `algorithm`.
    pub async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Option<VerificationKey> {
        let (found, stale) = self.lookup(kid, algorithm);
        if let Some(key) = found {
            if stale && self.may_refresh() {
                // Serve the key we have and refresh in the background; a failure keeps the old
                // set (providers publish new keys well before retiring old ones).
                let jwks = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = jwks.refresh_now().await {
                        tracing::warn!(url = %jwks.url, %error, "JWKS refresh failed");
                    }
                });
            }
            return Some(key);
        }
        // Unknown kid: wait for a refresh in flight (it may bring the key), then look again.
        let _guard = self.refresh.lock().await;
        if let (Some(key), _) = self.lookup(kid, algorithm) {
            return Some(key);
        }
        if !self.claim_attempt() {
            return None;
        }
        if let Err(error) = self.fetch().await {
            tracing::warn!(url = %self.url, %error, "JWKS refresh failed");
        }
        self.lookup(kid, algorithm).0
    }

    fn lookup(&self, kid: Option<&str>, algorithm: Algorithm) -> (Option<VerificationKey>, bool) {
        let set = self.keys.read().expect("JWKS lock");
        let stale = set
            .fetched_at
            .is_none_or(|at| self.clock.since(at) >= self.refresh_interval);
        let found = match kid {
            Some(kid) => set.keys.get(kid).cloned(),
            None => {
                let mut matching = set.keys.values().filter(|k| k.algorithm == algorithm);
                match (matching.next(), matching.next()) {
                    (Some(key), None) => Some(key.clone()),
                    _ => None,
                }
            }
        };
        (found, stale)
    }

    fn may_refresh(&self) -> bool {
        let last = self.last_attempt.lock().expect("JWKS lock");
        last.is_none_or(|at| self.clock.since(at) >= self.min_refresh_interval)
    }

    /// Takes the refresh slot of this interval; false when another request already took it.
    fn claim_attempt(&self) -> bool {
        let mut last = self.last_attempt.lock().expect("JWKS lock");
        if last.is_some_and(|at| self.clock.since(at) < self.min_refresh_interval) {
            return false;
        }
        *last = Some(self.clock.now());
        true
    }

    async fn refresh_now(&self) -> Result<(), String> {
        let _guard = self.refresh.lock().await;
        if !self.claim_attempt() {
            return Ok(());
        }
        self.fetch().await
    }

    async fn fetch(&self) -> Result<(), String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let request = axum::http::Request::get(&self.url)
            .header(
                axum::http::header::USER_AGENT,
                concat!("padel-bff/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| format!("bad URL: {e}"))?;
        let body = tokio::time::timeout(self.timeout, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("answered HTTP {}", response.status()));
            }
            // Key sets are a few KiB; refuse anything absurd.
            let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| format!("body unreadable: {e}"))?;
            Ok(body.to_bytes())
        })
        .await
        .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        let keys = usable_keys(&set);
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        let mut current = self.keys.write().expect("JWKS lock");
        current.keys = keys;
        current.fetched_at = Some(self.clock.now());
        Ok(())
    }
}

/// The signing keys of a set that padel-bff can use, by `kid`. Keys without a `kid`, for
/// encryption (`use: enc`), of other types or curves, or whose `alg` disagrees with their type are
/// left out.
pub fn usable_keys(set: &JwkSet) -> HashMap<String, VerificationKey> {
    set.keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, verification_key(jwk)?)))
        .collect()
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
        Some(_) => false,
    };
    if !declared_ok {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey { algorithm, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_signing_keys_whose_algorithm_matches_their_type() {
        let set: JwkSet = serde_json::from_str(
            r#"{"keys":[
              {"kty":"RSA","kid":"good-rsa","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
              {"kty":"RSA","kid":"rsa-claims-es256","alg":"ES256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
              {"kty":"RSA","kid":"enc","use":"enc","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
              {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
              {"kty":"EC","kid":"good-ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
              {"kty":"RSA","n":"AQAB","e":"AQAB"}
            ]}"#,
        )
        .unwrap();
        let keys = usable_keys(&set);
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["good-ec", "good-rsa"]);
        assert_eq!(keys["good-rsa"].algorithm, Algorithm::RS256);
        assert_eq!(keys["good-ec"].algorithm, Algorithm::ES256);
    }
}
