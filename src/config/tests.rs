//! Loading, layering and validation, from files and explicit environments.

use super::*;

fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load_from(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &vars,
    )
}

#[test]
fn defaults_load_as_development_on_the_embedded_database() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.profile, Profile::Development);
    assert!(settings.is_embedded_database());
    assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8000");
}

#[test]
fn usual_environment_names_override_the_files() {
    let settings = load(&[
        ("PORT", "9100"),
        ("DATABASE_URL", "postgres://x@h/db"),
        ("BFF__SERVER__DEBUG_HEADERS", "false"),
    ])
    .unwrap();
    assert_eq!(settings.server.listen.port(), 9100);
    assert_eq!(settings.database.url, "postgres://x@h/db");
    assert!(!settings.server.debug_headers);
}

#[test]
fn a_bad_value_names_its_key() {
    let error = load(&[("BFF_LISTEN", "not-an-address")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("server.listen"), "{error}");
    let error = load(&[("BFF__SERVER__NO_SUCH_KEY", "1")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("no_such_key"), "{error}");
}

#[test]
fn production_refuses_the_development_secret() {
    let error = load(&[("BFF_PROFILE", "production")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("auth.jwt_secret"), "{error}");
    // RFC 7518: 32 bytes at least for HS256 in production.
    let error = load(&[
        ("BFF_PROFILE", "production"),
        ("BFF_JWT_SECRET", "a-31-byte-secret-is-too-short!!"),
    ])
    .unwrap_err()
    .to_string();
    assert!(error.contains("32 bytes"), "{error}");
    let settings = load(&[
        ("BFF_PROFILE", "production"),
        ("BFF_JWT_SECRET", "a-real-secret-of-enough-length-32b"),
    ])
    .unwrap();
    assert_eq!(settings.profile, Profile::Production);
    assert!(!settings.server.introspection);
}

#[test]
fn a_profile_without_its_file_refuses_to_start() {
    let error = load(&[("BFF_PROFILE", "staging")]).unwrap_err().to_string();
    assert!(error.contains("staging.toml"), "{error}");
    // The embedded default alone (no config directory): production is refused too.
    let empty = std::env::temp_dir().join(format!("bff-no-config-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let vars = vec![
        ("BFF_PROFILE".to_string(), "production".to_string()),
        ("BFF_JWT_SECRET".to_string(), "x".repeat(40)),
    ];
    let error = Settings::load_from(&empty, &vars).unwrap_err().to_string();
    assert!(error.contains("production.toml"), "{error}");
}

#[test]
fn jwks_needs_an_audience_unless_any_is_allowed_on_purpose() {
    let jwks = ("BFF_JWKS_URL", "https://idp.example/.well-known/jwks.json");
    let error = load(&[jwks]).unwrap_err().to_string();
    assert!(error.contains("auth.audience"), "{error}");
    assert!(load(&[jwks, ("BFF__AUTH__AUDIENCE", "padel-bff")]).is_ok());
    assert!(load(&[jwks, ("BFF__AUTH__ALLOW_ANY_AUDIENCE", "true")]).is_ok());
}

#[test]
fn forwarded_for_needs_the_trusted_proxies() {
    let trust = ("BFF__RATE_LIMIT__TRUST_FORWARDED_FOR", "true");
    let error = load(&[trust]).unwrap_err().to_string();
    assert!(error.contains("trusted_proxies"), "{error}");
    let path = std::env::temp_dir().join(format!("bff-proxies-{}", std::process::id()));
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("default.toml"),
        EMBEDDED_DEFAULT.replace(
            "trusted_proxies = []",
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]",
        ),
    )
    .unwrap();
    let vars = vec![(trust.0.to_string(), trust.1.to_string())];
    let settings = Settings::load_from(&path, &vars).unwrap();
    assert_eq!(settings.rate_limit.trusted_proxies.len(), 2);
}

#[test]
fn urls_lose_their_secrets() {
    assert_eq!(
        redact("postgres://padel:secret@db:5432/padel"),
        "postgres://padel:***@db:5432/padel"
    );
    assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    assert_eq!(
        redact("postgres://u@db/padel?sslmode=require&password=S3cret"),
        "postgres://u@db/padel?sslmode=require&password=***"
    );
    assert_eq!(
        redact("redis://:S3cret@cache:6379/0"),
        "redis://:***@cache:6379/0"
    );
    assert_eq!(
        redact("https://user:S3cret@otel.example:4318?Token=abc"),
        "https://user:***@otel.example:4318?Token=***"
    );
}
