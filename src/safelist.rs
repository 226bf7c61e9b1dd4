//! Safelist mode: only operations from a persisted-operation manifest run. Frontend builds emit
//! the manifest (docs/security.md); the gateway loads it at start.

use std::collections::HashMap;

use sha2::Digest;

/// Documents allowed to run, by id and by SHA-256 of their text.
#[derive(Debug, Default, Clone)]
pub struct Safelist {
    by_id: HashMap<String, String>,
    by_hash: HashMap<String, String>,
}

/// Hex SHA-256 of a document, the key APQ and the Apollo manifest use.
pub fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Safelist {
    /// Parses a manifest: Apollo's `{"format": "apollo-persisted-query-manifest", "operations":
    /// [{"id", "body", …}]}` or Relay's / generic `{"<id>": "<document>"}`.
    pub fn parse(text: &str) -> Result<Safelist, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let mut entries: Vec<(String, String)> = Vec::new();
        if let Some(operations) = json.get("operations").and_then(|o| o.as_array()) {
            for op in operations {
                let (Some(id), Some(body)) = (op["id"].as_str(), op["body"].as_str()) else {
                    return Err("every operation needs an id and a body".into());
                };
                entries.push((id.to_string(), body.to_string()));
            }
        } else if let Some(map) = json.as_object() {
            for (id, body) in map {
                let body = body
                    .as_str()
                    .ok_or_else(|| format!("the document of {id} is not a string"))?;
                entries.push((id.clone(), body.to_string()));
            }
        } else {
            return Err("expected an Apollo manifest or an {id: document} object".into());
        }
        let mut safelist = Safelist::default();
        for (id, body) in entries {
            safelist.by_hash.insert(sha256_hex(&body), body.clone());
            safelist.by_id.insert(id, body);
        }
        Ok(safelist)
    }

    /// The names of the operations in the list (they label metrics as themselves).
    pub fn operation_names(&self) -> Vec<String> {
        self.by_id
            .values()
            .filter_map(|body| async_graphql::parser::parse_query(body).ok())
            .flat_map(|document| {
                document
                    .operations
                    .iter()
                    .filter_map(|(name, _)| name.map(|n| n.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Operations in the list.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The document a request may run: the one its id or hash names, or its own text when that
    /// text is in the list; `None` otherwise.
    pub fn resolve(&self, id: Option<&str>, text: &str) -> Option<String> {
        if let Some(id) = id {
            return self
                .by_id
                .get(id)
                .or_else(|| self.by_hash.get(&id.to_ascii_lowercase()))
                .cloned();
        }
        self.by_hash.get(&sha256_hex(text)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_manifest_formats_allow_their_documents_only() {
        let apollo = r#"{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id":"abc","name":"Me","type":"query","body":"query Me { authContext { user { email } } }"}]}"#;
        let list = Safelist::parse(apollo).unwrap();
        assert_eq!(
            list.resolve(Some("abc"), ""),
            Some("query Me { authContext { user { email } } }".into())
        );
        assert!(list
            .resolve(None, "query Me { authContext { user { email } } }")
            .is_some());
        assert!(list.resolve(None, "{ __typename }").is_none());
        assert!(list.resolve(Some("nope"), "").is_none());
        let relay = Safelist::parse(r#"{"q1": "{ __typename }"}"#).unwrap();
        assert_eq!(
            relay.resolve(Some(&sha256_hex("{ __typename }")), ""),
            Some("{ __typename }".into())
        );
        assert!(Safelist::parse("[1]").is_err());
    }
}
