//! Bearer tokens (HS256 JWTs) and the signed-in principal. Identity comes only from a verified
//! token's `sub`; nothing in other headers is trusted.

use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
    config::AuthSettings,
    domain::{access::Viewer, ClubRole, OrgRole},
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

/// Verifies and (for development tools) signs tokens with the configured secret.
#[derive(Clone)]
pub struct TokenAuthority {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl TokenAuthority {
    /// Builds the verifier: HS256 only, `exp` and `sub` required, `iss`/`aud` when configured.
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let issuer = (!settings.issuer.is_empty()).then(|| settings.issuer.clone());
        let audience = (!settings.audience.is_empty()).then(|| settings.audience.clone());
        if let Some(iss) = &issuer {
            validation.set_issuer(&[iss]);
        }
        match &audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        TokenAuthority {
            decoding: DecodingKey::from_secret(settings.jwt_secret.as_bytes()),
            encoding: EncodingKey::from_secret(settings.jwt_secret.as_bytes()),
            validation,
            issuer,
            audience,
        }
    }

    /// Reads the bearer token of a request.
    pub fn credentials(&self, headers: &HeaderMap) -> Credentials {
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
        match self.verify(token.trim()) {
            Ok(user_id) => Credentials::User(user_id),
            Err(reason) => Credentials::Invalid(reason),
        }
    }

    /// Verifies a token and returns the user id of its `sub`.
    pub fn verify(&self, token: &str) -> Result<i64, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
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
        data.claims
            .sub
            .parse::<i64>()
            .map_err(|_| "the token's subject is not a user id".to_string())
    }

    /// Signs a token for `user_id` valid for `ttl` (the `token` command and demo tokens).
    pub fn sign(&self, user_id: i64, ttl: Duration) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat: Some(now),
            exp: now + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
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
            leeway: Duration::from_secs(0),
            demo_token_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_a_foreign_one_does_not() {
        let authority = TokenAuthority::new(&settings("a-secret-long-enough-1234"));
        let token = authority.sign(42, Duration::from_secs(60));
        assert_eq!(authority.verify(&token), Ok(42));
        let other = TokenAuthority::new(&settings("another-secret-long-enough"));
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn none_algorithm_and_expired_tokens_are_refused() {
        let authority = TokenAuthority::new(&settings("a-secret-long-enough-1234"));
        // {"alg":"none","typ":"JWT"} . {"sub":"1","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(authority.verify(none).is_err());
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "1".into(),
                exp: 1_000,
                iat: None,
                iss: None,
                aud: None,
            },
            &EncodingKey::from_secret(b"a-secret-long-enough-1234"),
        )
        .unwrap();
        assert_eq!(
            authority.verify(&expired),
            Err("the token has expired".into())
        );
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "1".into(),
                exp: 9_999_999_999,
                iat: None,
                iss: None,
                aud: None,
            },
            &EncodingKey::from_secret(b"a-secret-long-enough-1234"),
        )
        .unwrap();
        assert!(authority.verify(&hs512).is_err());
    }
}
