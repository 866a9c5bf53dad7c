//! Errors: the crate's own [`Error`], and [`ApiError`], an HTTP status with
//! the protocol's `{"detail": …}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use vecseal::AccessError;

/// Errors of starting or running the server.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS {what}: {reason}")]
    Tls {
        /// Which file or setting.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid {name}: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// Serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to a client: a status and a `detail` message, which
/// never holds a key, a vector, metadata or contents.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) detail: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub(crate) fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// An engine error met while doing `context` (`"Failed to query"`):
    /// the status the protocol gives that kind of error, and the engine's
    /// message (engine messages name parameters and ids, never secrets).
    pub(crate) fn engine(context: &str, e: vecseal::Error) -> Self {
        use vecseal::Error as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::AlreadyExists(_) | E::StaleHandle(_) => StatusCode::CONFLICT,
            E::Access(a) => match a {
                AccessError::WrongKey => StatusCode::UNAUTHORIZED,
                AccessError::UnknownUser(_) | AccessError::PermissionDenied { .. } => {
                    StatusCode::FORBIDDEN
                }
                AccessError::EmptyGrant | AccessError::InvalidUserId { .. } => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            E::DimensionMismatch { .. }
            | E::NonFinite { .. }
            | E::EmptyId(_)
            | E::InvalidParameter { .. }
            | E::NotEnoughVectors { .. }
            | E::NotQueryable { .. }
            | E::BadFilter { .. }
            | E::BadMetadata(_) => StatusCode::BAD_REQUEST,
            // The database is restarting or out of reach, or another
            // server's commit got in the way: retry.
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let detail = match &e {
            E::Access(AccessError::WrongKey) => {
                format!("{context}: wrong index key: the key given does not open this index")
            }
            E::Access(AccessError::UnknownUser(_)) => {
                format!("{context}: permission denied: this user has no access to the index")
            }
            _ => format!("{context}: {e}"),
        };
        Self::new(status, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "detail": self.detail })),
        )
            .into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::ApiError;

    #[test]
    fn an_unreachable_database_is_503_and_other_storage_errors_500() {
        let down = vecseal::Error::Storage(vecseal::StorageError::Unavailable(
            "postgres: connection refused".into(),
        ));
        let e = ApiError::engine("Failed to query", down);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.detail.contains("retry later"), "{}", e.detail);
        let broken = vecseal::Error::Storage(vecseal::StorageError::Engine("disk".into()));
        assert_eq!(
            ApiError::engine("Failed to query", broken).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
