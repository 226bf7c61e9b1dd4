//! Bearer tokens and the signed-in principal ([`principal`], the one place a caller is loaded).
//! Identity comes only from a verified token's `sub`; nothing in other headers is trusted.
//!
//! Two kinds of token are accepted: HS256 with the shared secret (`BFF_JWT_SECRET`; an empty secret
//! turns it off) and RS256/ES256 signed by a key of the identity provider's JWKS (`BFF_JWKS_URL`).
//! The algorithm a token may use is decided by the key that verifies it, never by its header alone
//! (RFC 8725): `alg: none` and other algorithms are refused, an HS256 token is only ever checked
//! against the shared secret (so one HMAC-signed with an RSA public key fails), and an RS256 token
//! whose `kid` names an EC key fails too.

pub mod jwks;

use std::{sync::Arc, time::Duration};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
    config::AuthSettings,
    domain::{access::Viewer, ClubRole, OrgRole},
    error::{ApiError, ApiResult},
    store::{OrganizationRow, PrincipalRecord, UserRow},
};

/// The claims padel-bff reads; others are ignored.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// What verification reads back from a token; `iss`/`aud` are checked by the validator on the raw
/// claims (where `aud` may be a string or an array, RFC 7519) and not parsed here.
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// A token that verified: who it names and the times it is valid between.
#[derive(Debug, Clone, Copy)]
struct Verified {
    user_id: i64,
    exp: u64,
    nbf: Option<u64>,
}

/// What the request's `Authorization` header amounts to, before any database lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No header.
    Anonymous,
    /// A verified token for this user id.
    User(i64),
    /// A header that is not a valid token; the reason is safe to show.
    Invalid(String),
}

/// The shared-secret half: verifies and (for development tools) signs HS256 tokens.
#[derive(Clone)]
struct SharedSecret {
    decoding: DecodingKey,
    encoding: EncodingKey,
}

/// Verifies bearer tokens (HS256 and JWKS keys) and signs HS256 ones for development tools.
#[derive(Clone)]
pub struct TokenAuthority {
    secret: Option<SharedSecret>,
    jwks: Option<Arc<jwks::Jwks>>,
    leeway: u64,
    issuer: Option<String>,
    audience: Option<String>,
    /// Tokens that verified, by their exact text: a repeated token skips the signature check
    /// (HMAC/RSA/ECDSA, base64 and JSON) and only its times are checked again. Bounded in bytes,
    /// and each entry lives at most 5 minutes so a key removed from the JWKS stops counting soon.
    verified: moka::sync::Cache<String, Verified>,
    /// The gateway's clock: expiry and not-before are checked on it (tests advance it).
    clock: crate::clock::Clock,
}

impl TokenAuthority {
    /// Builds the verifier: `exp` and `sub` required, `nbf` checked when present, `iss`/`aud` when
    /// configured, all with `auth.leeway` of clock skew.
    pub fn new(settings: &AuthSettings) -> Self {
        Self::with_clock(settings, crate::clock::Clock::system())
    }

    /// [`TokenAuthority::new`] on a given clock (the gateway's, shared with the cache).
    pub fn with_clock(settings: &AuthSettings, clock: crate::clock::Clock) -> Self {
        let secret = (!settings.jwt_secret.is_empty()).then(|| SharedSecret {
            decoding: DecodingKey::from_secret(settings.jwt_secret.as_bytes()),
            encoding: EncodingKey::from_secret(settings.jwt_secret.as_bytes()),
        });
        let jwks =
            (!settings.jwks_url.is_empty()).then(|| jwks::Jwks::new(settings, clock.clone()));
        TokenAuthority {
            verified: moka::sync::Cache::builder()
                .max_capacity(4 << 20)
                .weigher(|token: &String, _: &Verified| {
                    u32::try_from(token.len() + 48).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(300))
                .build(),
            secret,
            jwks,
            leeway: settings.leeway.as_secs(),
            issuer: (!settings.issuer.is_empty()).then(|| settings.issuer.clone()),
            audience: (!settings.audience.is_empty()).then(|| settings.audience.clone()),
            clock,
        }
    }

    /// The JWKS client, when a JWKS URL is configured.
    pub fn jwks(&self) -> Option<&Arc<jwks::Jwks>> {
        self.jwks.as_ref()
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation
    }

    /// Reads the bearer token of a request.
    pub async fn credentials(&self, headers: &HeaderMap) -> Credentials {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Credentials::Anonymous;
        };
        let Some(token) = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) else {
            return Credentials::Invalid(
                "the Authorization header must be `Bearer <token>`".into(),
            );
        };
        match self.verify(token.trim()).await {
            Ok(user_id) => Credentials::User(user_id),
            Err(reason) => Credentials::Invalid(reason),
        }
    }

    /// The user of the request's bearer token when that token was verified before and is still
    /// in time: a lookup, no signature check and no key fetch (the edge asks this before it
    /// charges the address, so a refused flood costs no cryptography).
    pub fn known_user(&self, headers: &HeaderMap) -> Option<i64> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        let known = self.verified.get(token.trim())?;
        self.in_time(known.exp, known.nbf).ok()?;
        Some(known.user_id)
    }

    /// Verifies a token and returns the user id of its `sub`.
    pub async fn verify(&self, token: &str) -> Result<i64, String> {
        self.verified(token).await.map(|v| v.user_id)
    }

    /// Verifies a token and returns the user id of its `sub` and how long it stays valid (on
    /// the gateway's clock, with the leeway): a live connection closes when that runs out.
    pub async fn verify_for(&self, token: &str) -> Result<(i64, std::time::Duration), String> {
        let verified = self.verified(token).await?;
        let until_ms = verified
            .exp
            .saturating_add(self.leeway)
            .saturating_mul(1000);
        let left = until_ms.saturating_sub(self.clock.now_ms());
        Ok((verified.user_id, std::time::Duration::from_millis(left)))
    }

    async fn verified(&self, token: &str) -> Result<Verified, String> {
        if let Some(known) = self.verified.get(token) {
            if let Ok(()) = self.in_time(known.exp, known.nbf) {
                return Ok(known);
            }
            // Expired (or not yet valid): the full check below gives the exact reason.
        }
        let not_accepted = || "the token's algorithm is not accepted".to_string();
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                // `alg: none` and names jsonwebtoken does not know land here.
                ErrorKind::Json(_) => not_accepted(),
                _ => "the token is invalid".to_string(),
            }
        })?;
        let (key, algorithm) = match header.alg {
            Algorithm::HS256 => {
                let secret = self.secret.as_ref().ok_or_else(not_accepted)?;
                (secret.decoding.clone(), Algorithm::HS256)
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or_else(not_accepted)?;
                let found = jwks
                    .key(header.kid.as_deref(), header.alg)
                    .await
                    .ok_or_else(|| "the token's signing key is unknown".to_string())?;
                if found.algorithm != header.alg {
                    return Err(not_accepted());
                }
                (found.key, found.algorithm)
            }
            _ => return Err(not_accepted()),
        };
        let data = jsonwebtoken::decode::<VerifiedClaims>(token, &key, &self.validation(algorithm))
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                    ErrorKind::ImmatureSignature => "the token is not valid yet".to_string(),
                    ErrorKind::InvalidAlgorithm => {
                        "the token's algorithm is not accepted".to_string()
                    }
                    ErrorKind::InvalidIssuer => "the token's issuer is not accepted".to_string(),
                    ErrorKind::InvalidAudience => {
                        "the token's audience is not accepted".to_string()
                    }
                    ErrorKind::InvalidSignature => "the token's signature is invalid".to_string(),
                    _ => "the token is invalid".to_string(),
                }
            })?;
        // jsonwebtoken checked the times on the system clock; the gateway's clock decides too
        // (the same reading in production; ahead of it in a test that advanced it).
        self.in_time(data.claims.exp, data.claims.nbf)?;
        let user_id = data
            .claims
            .sub
            .parse::<i64>()
            .map_err(|_| "the token's subject is not a user id".to_string())?;
        let verified = Verified {
            user_id,
            exp: data.claims.exp,
            nbf: data.claims.nbf,
        };
        self.verified.insert(token.to_string(), verified);
        Ok(verified)
    }

    /// Whether `exp` and `nbf` (seconds since the epoch) hold now, with the leeway.
    fn in_time(&self, exp: u64, nbf: Option<u64>) -> Result<(), String> {
        let now = self.clock.now_ms() / 1000;
        if now > exp.saturating_add(self.leeway) {
            return Err("the token has expired".into());
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err("the token is not valid yet".into());
        }
        Ok(())
    }

    /// Signs an HS256 token for `user_id` valid for `ttl` (the `token` command and demo tokens);
    /// `None` when the shared secret is turned off.
    pub fn sign(&self, user_id: i64, ttl: Duration) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let now = self.clock.now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            iat: Some(now),
            exp: now + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            nbf: None,
        };
        Some(
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret.encoding)
                .expect("HS256 signing cannot fail"),
        )
    }
}

/// The signed-in caller of `credentials`, read through the cache (the `authContext` kind, so a
/// deactivation anywhere reaches it by invalidation): UNAUTHENTICATED without a valid token, or
/// for an unknown or inactive user. Every caller (resolvers, response-cache hits, the management
/// and monitoring guard) goes through here. The cache outcome comes back even when the answer is
/// a refusal, for the request's trace of cache reads.
pub async fn principal(
    cache: &crate::cache::Cache,
    store: &crate::store::Store,
    credentials: &Credentials,
) -> (ApiResult<Principal>, Option<crate::cache::Outcome>) {
    let user_id = match credentials {
        Credentials::User(id) => *id,
        Credentials::Anonymous => {
            let message = "authentication required: send `Authorization: Bearer <token>`";
            return (Err(ApiError::Unauthenticated(message.into())), None);
        }
        Credentials::Invalid(reason) => {
            return (Err(ApiError::Unauthenticated(reason.clone())), None)
        }
    };
    match crate::reads::principal(cache, store, user_id).await {
        Ok((record, outcome)) if record.user.is_active => {
            (Ok(Principal::from(record)), Some(outcome))
        }
        Ok((_, outcome)) => (
            Err(ApiError::Unauthenticated("unknown or inactive user".into())),
            Some(outcome),
        ),
        Err(error) => (Err(error), None),
    }
}

/// The signed-in user with their active memberships.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user row.
    pub user: UserRow,
    /// Access-rule view of the user.
    pub viewer: Viewer,
    /// Organizations the user is an active member of, by name, with the role.
    pub organizations: Vec<(OrganizationRow, OrgRole)>,
}

impl From<PrincipalRecord> for Principal {
    fn from(record: PrincipalRecord) -> Self {
        let organizations: Vec<(OrganizationRow, OrgRole)> = record
            .organizations
            .into_iter()
            .filter_map(|(org, role)| OrgRole::parse(&role).map(|r| (org, r)))
            .collect();
        let viewer = Viewer {
            user_id: record.user.id,
            is_superuser: record.user.is_superuser,
            org_roles: organizations.iter().map(|(o, r)| (o.id, *r)).collect(),
            club_roles: record
                .clubs
                .iter()
                .filter_map(|(club, org, role)| ClubRole::parse(role).map(|r| (*club, *org, r)))
                .collect(),
        };
        Principal {
            user: record.user,
            viewer,
            organizations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings {
            jwt_secret: secret.into(),
            issuer: String::new(),
            audience: String::new(),
            allow_any_audience: false,
            leeway: Duration::from_secs(0),
            demo_token_ttl: Duration::from_secs(60),
            jwks_url: String::new(),
            jwks_refresh_interval: Duration::from_secs(600),
            jwks_min_refresh_interval: Duration::from_secs(30),
            jwks_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_signed_token_verifies_and_a_foreign_one_does_not() {
        let authority = TokenAuthority::new(&settings("a-secret-long-enough-1234"));
        let token = authority.sign(42, Duration::from_secs(60)).unwrap();
        assert_eq!(authority.verify(&token).await, Ok(42));
        let other = TokenAuthority::new(&settings("another-secret-long-enough"));
        assert!(other.verify(&token).await.is_err());
        let secretless = TokenAuthority::new(&settings(""));
        assert!(secretless.sign(42, Duration::from_secs(60)).is_none());
        assert_eq!(
            secretless.verify(&token).await,
            Err("the token's algorithm is not accepted".into())
        );
    }

    /// A token with only `sub` and `exp`, signed with the test secret.
    fn signed(algorithm: Algorithm, sub: &str, exp: u64) -> String {
        let claims = Claims {
            sub: sub.into(),
            exp,
            iat: None,
            iss: None,
            aud: None,
            nbf: None,
        };
        jsonwebtoken::encode(
            &Header::new(algorithm),
            &claims,
            &EncodingKey::from_secret(b"a-secret-long-enough-1234"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires_on_time() {
        let clock = crate::clock::Clock::system();
        let authority =
            TokenAuthority::with_clock(&settings("a-secret-long-enough-1234"), clock.clone());
        let exp = clock.now_ms() / 1000 + 60;
        let token = signed(Algorithm::HS256, "7", exp);
        assert_eq!(authority.verify(&token).await, Ok(7));
        assert_eq!(authority.verify(&token).await, Ok(7), "served from memory");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            authority.verify(&token).await,
            Err("the token has expired".into())
        );
        // A tampered copy of a remembered token is a different text: checked, and refused.
        let fresh = TokenAuthority::new(&settings("a-secret-long-enough-1234"));
        let good = fresh.sign(9, Duration::from_secs(60)).unwrap();
        assert_eq!(fresh.verify(&good).await, Ok(9));
        let mut forged: Vec<char> = good.chars().collect();
        let i = forged.len() - 6;
        forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
        let forged: String = forged.into_iter().collect();
        assert_eq!(
            fresh.verify(&forged).await,
            Err("the token's signature is invalid".into())
        );
    }

    #[tokio::test]
    async fn none_algorithm_and_expired_tokens_are_refused() {
        let authority = TokenAuthority::new(&settings("a-secret-long-enough-1234"));
        // {"alg":"none","typ":"JWT"} . {"sub":"1","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(
            authority.verify(none).await,
            Err("the token's algorithm is not accepted".into())
        );
        let expired = signed(Algorithm::HS256, "1", 1_000);
        assert_eq!(
            authority.verify(&expired).await,
            Err("the token has expired".into())
        );
        let hs512 = signed(Algorithm::HS512, "1", 9_999_999_999);
        assert!(authority.verify(&hs512).await.is_err());
        // RS256 without a JWKS URL configured.
        let rs256 =
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln";
        assert_eq!(
            authority.verify(rs256).await,
            Err("the token's algorithm is not accepted".into())
        );
    }
}
