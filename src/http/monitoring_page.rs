//! GET /monitoring: the operators' page, one self-contained HTML document (its CSS and JS inline,
//! embedded in the binary: no CDN, works offline). It holds no data: the script asks for a
//! superuser's token and reads the monitoring and management APIs with it, which check it.
//!
//! A strict Content-Security-Policy allows exactly the page's own inline style and script (by
//! their SHA-256), connections to this origin only, and no framing.

use std::sync::LazyLock;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const HTML: &str = include_str!("monitoring_page/index.html");
const CSS: &str = include_str!("monitoring_page/page.css");
const JS: &str = include_str!("monitoring_page/page.js");

/// The assembled page and its Content-Security-Policy.
struct Page {
    html: String,
    policy: String,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let hash = |text: &str| {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    };
    Page {
        html: HTML.replace("/*CSS*/", CSS).replace("/*JS*/", JS),
        policy: format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(CSS),
            hash(JS)
        ),
    }
});

/// GET /monitoring.
pub(crate) async fn page() -> Response {
    let page = &*PAGE;
    let mut response = page.html.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&page.policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_whole_small_and_has_no_outside_reference() {
        let html = &PAGE.html;
        assert!(!html.contains("/*CSS*/") && !html.contains("/*JS*/"));
        assert!(html.len() < 150 * 1024, "{} bytes", html.len());
        for outside in ["http://", "https://", "//cdn", "src=\"", "href=\""] {
            // The SVG namespace is a name, not a fetch.
            let found = html.match_indices(outside).any(|(i, _)| {
                !html[i..].starts_with("http://www.w3.org/2000/svg")
                    && !html[i..].starts_with("href=\"data:")
            });
            assert!(!found, "the page references {outside}");
        }
        // Values from the server are text, never markup.
        assert!(!JS.contains("innerHTML") && !JS.contains("insertAdjacentHTML"));
        assert!(
            !HTML.contains("style=\""),
            "inline style attributes break the CSP"
        );
    }
}
