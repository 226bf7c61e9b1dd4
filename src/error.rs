//! Errors, one type per layer: [`StoreError`] below, [`ApiError`] at the GraphQL edge.
//! Clients see a stable `extensions.code` and a safe message; logs see the whole cause chain.

use async_graphql::ErrorExtensions;

/// What the store can report. Constraint violations become domain variants here, in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Two non-cancelled reservations of one court would overlap.
    #[error("the court is already booked at that time")]
    Overlap,
    /// The caller already used this idempotency key.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// The player already holds the club's maximum of live bookings.
    #[error("the player holds the club's maximum of active bookings")]
    QuotaExceeded,
    /// Any other database failure: logged, never shown.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Migration failure (start-up only).
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps driver errors of named constraints to domain variants.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            let constraint = db.constraint().unwrap_or_default();
            let message = db.message();
            // A deadlock between two racing inserts (one waits on the other's exclusion entry,
            // the other on its unique-key entry) aborts one of them: it lost the race.
            if constraint == "reservations_no_overlap"
                || message.contains("reservations_no_overlap")
                || db.code().as_deref() == Some("40P01")
            {
                return StoreError::Overlap;
            }
            if constraint == "reservations_idempotency_key"
                || (db.is_unique_violation() && message.contains("idempotency_key"))
            {
                return StoreError::IdempotencyKeyTaken;
            }
        }
        StoreError::Database(error)
    }
}

/// The stable error codes of the GraphQL API (`extensions.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No, an invalid, or an expired bearer token; or an unknown/inactive user.
    Unauthenticated,
    /// Signed in and allowed to see the thing, but not to do this.
    Forbidden,
    /// Does not exist, or the caller may not know it exists.
    NotFound,
    /// The input breaks a rule.
    BadUserInput,
    /// The input clashes with the current state (a taken slot).
    Conflict,
    /// Anything else; details are only in the logs.
    InternalServerError,
    /// The request could not be parsed as GraphQL.
    GraphqlParseFailed,
    /// The request is not valid against the schema.
    GraphqlValidationFailed,
    /// The document is over a query limit (depth, complexity, aliases, size…).
    QueryTooComplex,
    /// A dependency (the database) is unavailable; retry later.
    ServiceUnavailable,
    /// Too many requests; retry after `Retry-After` seconds.
    RateLimited,
    /// An automatic persisted query's hash is unknown: send the document with it (Apollo APQ).
    PersistedQueryNotFound,
    /// Safelist mode: the operation is not in the manifest.
    OperationNotInSafelist,
    /// The document asks for `__schema` or `__type` while introspection is off (production);
    /// of the GRAPHQL_VALIDATION_FAILED family, as Apollo's servers answer it.
    IntrospectionDisabled,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::IntrospectionDisabled,
        ErrorCode::OperationNotInSafelist,
        ErrorCode::PersistedQueryNotFound,
        ErrorCode::RateLimited,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadUserInput,
        ErrorCode::Conflict,
        ErrorCode::InternalServerError,
        ErrorCode::GraphqlParseFailed,
        ErrorCode::GraphqlValidationFailed,
        ErrorCode::QueryTooComplex,
        ErrorCode::ServiceUnavailable,
    ];

    /// The wire form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::InternalServerError => "INTERNAL_SERVER_ERROR",
            ErrorCode::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            ErrorCode::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            ErrorCode::QueryTooComplex => "QUERY_TOO_COMPLEX",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::OperationNotInSafelist => "OPERATION_NOT_IN_SAFELIST",
            ErrorCode::IntrospectionDisabled => "INTROSPECTION_DISABLED",
        }
    }
}

/// An error a resolver returns: a code and a message safe to show. `Clone` because the engine
/// may hand one error to several fields.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// See [`ErrorCode::Unauthenticated`].
    #[error("{0}")]
    Unauthenticated(String),
    /// See [`ErrorCode::Forbidden`].
    #[error("{0}")]
    Forbidden(String),
    /// See [`ErrorCode::NotFound`].
    #[error("{0}")]
    NotFound(String),
    /// See [`ErrorCode::BadUserInput`].
    #[error("{0}")]
    BadUserInput(String),
    /// See [`ErrorCode::Conflict`].
    #[error("{0}")]
    Conflict(String),
    /// See [`ErrorCode::ServiceUnavailable`].
    #[error("{0}")]
    ServiceUnavailable(String),
    /// See [`ErrorCode::InternalServerError`]; the cause is logged, never sent.
    #[error("internal server error")]
    Internal(std::sync::Arc<anyhow::Error>),
}

impl ApiError {
    /// Shorthand for the common "you may not know this exists" answer.
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// Wraps an unexpected failure; its cause goes to the log only.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(std::sync::Arc::new(cause.into()))
    }

    /// Shorthand for rule violations.
    pub fn bad_input(message: impl Into<String>) -> Self {
        ApiError::BadUserInput(message.into())
    }

    /// The code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::BadUserInput(_) => ErrorCode::BadUserInput,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::ServiceUnavailable(_) => ErrorCode::ServiceUnavailable,
            ApiError::Internal(_) => ErrorCode::InternalServerError,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Overlap => {
                ApiError::Conflict("the court is already booked at that time".into())
            }
            StoreError::IdempotencyKeyTaken => {
                ApiError::Conflict("idempotency key already used".into())
            }
            StoreError::QuotaExceeded => ApiError::BadUserInput(
                "max_active_bookings: you already hold the club's maximum of active bookings"
                    .into(),
            ),
            StoreError::Database(error) if is_unavailable(&error) => {
                tracing::warn!(error = %error, "database unavailable");
                ApiError::ServiceUnavailable("the database is unavailable, retry later".into())
            }
            StoreError::Database(sqlx::Error::Database(db)) => {
                // The SQLSTATE says which failure this was; the message alone often does not.
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                ApiError::internal(
                    anyhow::Error::new(StoreError::Database(sqlx::Error::Database(db)))
                        .context(format!("SQLSTATE {code}")),
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        if let ApiError::Internal(cause) = &error {
            tracing::error!(error = format!("{cause:#}"), "internal error in resolver");
        }
        let code = error.code().as_str();
        async_graphql::Error::new(error.to_string()).extend_with(|_, ext| ext.set("code", code))
    }
}

impl ErrorCode {
    /// A request-level error (raised before execution) carrying this code.
    pub fn server_error(self, message: impl Into<String>) -> async_graphql::ServerError {
        let mut error = async_graphql::ServerError::new(message, None);
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", self.as_str());
        error.extensions = Some(extensions);
        error
    }
}

/// Whether a driver error means "cannot reach the database" rather than a bug.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        // Postgres: admin shutdown, cannot connect now, too many connections, database gone, a
        // session ended for idling (57P05, 25P03); and a database that refuses new sessions now
        // (FATAL 55000, `ALLOW_CONNECTIONS false`). Other FATAL answers (bad credentials, no
        // CONNECT privilege, a protocol violation) are misconfiguration or bugs, not outages.
        sqlx::Error::Database(db) => {
            matches!(
                db.code().as_deref(),
                Some("57P01" | "57P02" | "57P03" | "57P05" | "25P03" | "53300" | "3D000")
            ) || (db.code().as_deref() == Some("55000")
                && db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|pg| matches!(pg.severity(), sqlx::postgres::PgSeverity::Fatal)))
        }
        _ => false,
    }
}

/// Result type of resolvers and services.
pub type ApiResult<T> = Result<T, ApiError>;
