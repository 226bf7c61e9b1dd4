//! Where settings come from, in order: the default file, the profile file, the environment
//! (`BFF__SECTION__KEY`, and a few well-known names such as `DATABASE_URL`).

use std::net::SocketAddr;

use super::ConfigError;

pub(super) fn parse_file(path: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::File {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Deep-merges `overlay` into `base`: tables merge key by key, everything else is replaced.
pub(super) fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets a dotted key, creating tables on the way.
pub(super) fn set(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.to_string(), value);
}

/// Environment variables understood besides the generic `BFF__SECTION__KEY` form.
const WELL_KNOWN_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("BFF_LISTEN", "server.listen"),
    ("BFF_JWT_SECRET", "auth.jwt_secret"),
    ("BFF_JWKS_URL", "auth.jwks_url"),
    ("REDIS_URL", "cache.redis_url"),
];

pub(super) fn apply_env(
    table: &mut toml::Table,
    vars: &[(String, String)],
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        if let Some((_, key)) = WELL_KNOWN_ENV.iter().find(|(env, _)| env == name) {
            set(table, key, toml::Value::String(value.clone()));
        } else if let Some(path) = name.strip_prefix("BFF__") {
            let key = path.to_lowercase().replace("__", ".");
            set(table, &key, env_value(value));
        }
    }
    // PORT (the platform convention) replaces only the port of the listen address.
    if let Some((_, port)) = vars.iter().find(|(k, _)| k == "PORT") {
        let port: u16 = port.parse().map_err(|_| ConfigError::Key {
            key: "PORT".into(),
            message: format!("`{port}` is not a port number"),
        })?;
        let listen = table
            .get("server")
            .and_then(|s| s.get("listen"))
            .and_then(|l| l.as_str())
            .and_then(|l| l.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000)));
        let addr = SocketAddr::new(listen.ip(), port);
        set(
            table,
            "server.listen",
            toml::Value::String(addr.to_string()),
        );
    }
    Ok(())
}

/// Environment values are strings; integers, decimals and booleans are recognised so typed keys
/// work.
fn env_value(value: &str) -> toml::Value {
    // A TOML array (`["10.0.0.0/8", "192.0.2.1"]`) for list keys.
    if value.trim_start().starts_with('[') {
        if let Some(list) = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
        {
            return list;
        }
    }
    if let Ok(i) = value.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Some(f) = value
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && value.contains('.'))
    {
        toml::Value::Float(f)
    } else if let Ok(b) = value.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(value.to_string())
    }
}
