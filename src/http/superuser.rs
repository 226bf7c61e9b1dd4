//! The one guard of the management and monitoring APIs (active superusers, same bearer tokens,
//! the principal read through the cache like every other caller's), and the error body those
//! APIs answer with: `{"error": {"code", "message"}}`, the code an [`ErrorCode`] and the HTTP
//! status the one it maps to.

use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::{auth::Credentials, error::ErrorCode, state::AppState};

/// The HTTP status of an error code, for the JSON APIs.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::PersistedQueryNotFound => StatusCode::NOT_FOUND,
        ErrorCode::BadUserInput
        | ErrorCode::GraphqlParseFailed
        | ErrorCode::GraphqlValidationFailed
        | ErrorCode::QueryTooComplex
        | ErrorCode::IntrospectionDisabled
        | ErrorCode::OperationNotInSafelist => StatusCode::BAD_REQUEST,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer of the JSON APIs, with the status of its code.
pub(crate) fn error_response(code: ErrorCode, message: &str) -> Response {
    error_body(status_of(code), code, message)
}

/// An error answer of the JSON APIs with a given status.
pub(crate) fn error_body(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code.as_str(), "message": message } })),
    )
        .into_response()
}

/// Answers with an error unless the bearer is an active superuser: 401 UNAUTHENTICATED without a
/// valid token or for an unknown or inactive user, 403 FORBIDDEN for anyone else, 503
/// SERVICE_UNAVAILABLE when the user can't be read. The principal comes through the cache like
/// every caller's, so a demoted superuser loses access when the user's tag is invalidated (the
/// gateway's own writes and the database triggers bump it).
pub(crate) async fn require_superuser(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let credentials = state.tokens.credentials(headers).await;
    if credentials == Credentials::Anonymous {
        return Err(error_response(
            ErrorCode::Unauthenticated,
            "authentication required",
        ));
    }
    let (principal, _) = crate::auth::principal(&state.cache, &state.store, &credentials).await;
    match principal {
        Ok(principal) if principal.user.is_superuser => Ok(()),
        Ok(_) => Err(error_response(ErrorCode::Forbidden, "superusers only")),
        Err(error) if error.code() == ErrorCode::Unauthenticated => Err(error_response(
            ErrorCode::Unauthenticated,
            &error.to_string(),
        )),
        Err(error) => {
            tracing::error!(error = %error, "management auth lookup failed");
            Err(error_response(
                ErrorCode::ServiceUnavailable,
                "database unavailable",
            ))
        }
    }
}
