//! A BFF URL's query string to its operation's variables, coerced by the variables' declared
//! types. Exactly what the OpenAPI document publishes is accepted (ids by
//! [`ID_PATTERN`](super::types::ID_PATTERN), ints within their range, `YYYY-MM-DD` dates,
//! lower-case enum values); anything else is refused with a message naming the parameter, which
//! the adapter answers as 400 BAD_USER_INPUT. Parameters the route does not name are ignored
//! (cache busters and tracking parameters are common); one that is not a list may be given once.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{types::ValueType, Endpoint, Param};

/// Values a list parameter may repeat (a club has a few dozen courts; the bound keeps a long
/// query string from costing a lookup per value and a cache entry per permutation).
pub(super) const MAX_LIST_ITEMS: usize = 100;

/// The variables of `endpoint`'s operation from a query string; `Err` says which parameter is
/// wrong and why. Absent optional parameters are left out, so the document's defaults apply.
pub fn coerce(
    endpoint: &Endpoint,
    query: Option<&str>,
) -> Result<async_graphql::Variables, String> {
    let mut given: Vec<Vec<Cow<'_, str>>> = vec![Vec::new(); endpoint.params.len()];
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if let Some(index) = endpoint.params.iter().position(|p| p.spec.name == key) {
            given[index].push(value);
        }
    }
    let mut variables = Map::new();
    for (param, values) in endpoint.params.iter().zip(given) {
        let name = param.spec.name;
        if values.is_empty() {
            if param.required {
                return Err(format!("the query parameter `{name}` is required"));
            }
            continue;
        }
        let value = if param.list {
            if values.len() > MAX_LIST_ITEMS {
                return Err(format!(
                    "the query parameter `{name}` may be given at most {MAX_LIST_ITEMS} times"
                ));
            }
            let items = values
                .iter()
                .map(|v| one(param, v))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        } else if values.len() > 1 {
            return Err(format!(
                "the query parameter `{name}` is given more than once"
            ));
        } else {
            one(param, &values[0])?
        };
        variables.insert(param.spec.variable.to_string(), value);
    }
    Ok(async_graphql::Variables::from_json(Value::Object(
        variables,
    )))
}

/// One value of a parameter.
fn one(param: &Param, text: &str) -> Result<Value, String> {
    let name = param.spec.name;
    let shown = shown(text);
    match &param.value {
        ValueType::Id => is_id(text)
            .then(|| Value::String(text.to_string()))
            .ok_or_else(|| format!("`{name}`: `{shown}` is not an id (a positive integer)")),
        ValueType::Int { min, max } => integer(text)
            .filter(|v| (*min..=*max).contains(v))
            .map(Value::from)
            .ok_or_else(|| format!("`{name}`: `{shown}` is not an integer from {min} to {max}")),
        ValueType::Float => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && !text.starts_with('+'))
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{name}`: `{shown}` is not a number")),
        ValueType::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("`{name}`: `{shown}` is not true or false")),
        },
        ValueType::Text => Ok(Value::String(text.to_string())),
        ValueType::Date => is_date(text)
            .then(|| Value::String(text.to_string()))
            .ok_or_else(|| format!("`{name}`: `{shown}` is not a date (YYYY-MM-DD)")),
        ValueType::Enum(values) => values
            .iter()
            .find(|v| v.to_ascii_lowercase() == text)
            .map(|v| Value::String(v.clone()))
            .ok_or_else(|| {
                let allowed: Vec<String> = values.iter().map(|v| v.to_ascii_lowercase()).collect();
                format!("`{name}`: `{shown}` is not one of {}", allowed.join(", "))
            }),
    }
}

/// [`ID_PATTERN`](super::types::ID_PATTERN), by hand.
fn is_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=18).contains(&bytes.len()) && bytes[0] != b'0' && bytes.iter().all(u8::is_ascii_digit)
}

/// A decimal integer as JSON Schema's `integer` is written: an optional minus, digits.
fn integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An RFC 3339 `full-date` (OpenAPI's `format: date`): four-digit year, two-digit month and day,
/// a day the calendar has.
fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// A value as an error message may echo it: at most 32 characters.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(32).collect();
    if text.chars().count() > 32 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{endpoint, types::ID_PATTERN};

    fn bulk(query: &str) -> Result<serde_json::Value, String> {
        let endpoint = endpoint("/api/bff/bi/availability/bulk/").unwrap();
        coerce(endpoint, Some(query)).map(|v| serde_json::to_value(v).unwrap())
    }

    #[test]
    fn query_strings_become_the_declared_variables() {
        assert_eq!(
            bulk("club=3&date=2026-12-02&courts[]=7&courts%5B%5D=8&slot=60&utm=x").unwrap(),
            serde_json::json!({"clubId": "3", "date": "2026-12-02", "courtIds": ["7", "8"], "slotMinutes": 60})
        );
        assert_eq!(
            bulk("club=3&date=2026-12-02").unwrap(),
            serde_json::json!({"clubId": "3", "date": "2026-12-02"})
        );
        let analytics = endpoint("/api/bff/bi/analytics/club/").unwrap();
        let variables = coerce(analytics, Some("club=1&period=week")).unwrap();
        assert_eq!(
            serde_json::to_value(variables).unwrap(),
            serde_json::json!({"clubId": "1", "period": "WEEK"})
        );
    }

    #[test]
    fn what_the_document_publishes_is_all_that_is_accepted() {
        for bad in [
            "date=2026-12-02",
            "club=0&date=2026-12-02",
            "club=01&date=2026-12-02",
            "club=1234567890123456789&date=2026-12-02",
            "club=1&club=2&date=2026-12-02",
            "club=1&date=2026-02-30",
            "club=1&date=2026-1-05",
            "club=1&date=",
            "club=1&date=2026-12-02&slot=14",
            "club=1&date=2026-12-02&slot=241",
            "club=1&date=2026-12-02&slot=+90",
            "club=1&date=2026-12-02&slot=9.5",
            "club=1&date=2026-12-02&courts[]=x",
        ] {
            assert!(bulk(bad).is_err(), "{bad} was accepted");
        }
        let analytics = endpoint("/api/bff/bi/analytics/club/").unwrap();
        for bad in ["club=1&period=MONTH", "club=1&period=quarter"] {
            assert!(coerce(analytics, Some(bad)).is_err(), "{bad} was accepted");
        }
        assert!(bulk("club=1&date=2026-12-02&slot=240").is_ok());
        assert!(is_id("123456789012345678"));
        assert_eq!(ID_PATTERN, "^[1-9][0-9]{0,17}$");
    }
}
