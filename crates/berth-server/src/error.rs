//! [`HttpError`]: every failure of a handler, answered as an [`ErrorBody`] with the status
//! of its [`ErrorCode`]. Store errors map to 404, 400, 409 or (logged, with a generic
//! message) 500; protocol errors to 404, 409 (`stale_epoch` naming the epoch), 400 or 422.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::{ApiError, ErrorBody, ErrorCode};
use berth_protocol::ProtocolError;
use berth_store::StoreError;

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status (the one of the body's code).
    pub status: StatusCode,
    /// What the client is told.
    pub body: ErrorBody,
}

impl HttpError {
    /// An error of `code`, about `field` if given.
    pub fn new(code: ErrorCode, field: Option<&str>, message: impl Into<String>) -> HttpError {
        HttpError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ErrorBody {
                code,
                message: message.into(),
                field: field.map(str::to_owned),
            },
        }
    }

    /// 400 `invalid_argument` about `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> HttpError {
        HttpError::new(ErrorCode::InvalidArgument, Some(field), message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(ErrorCode::NotFound, None, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> HttpError {
        HttpError::new(ErrorCode::Forbidden, None, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> HttpError {
        HttpError::new(ErrorCode::Conflict, None, message)
    }

    /// 500 `internal`: logs `detail` and tells the client only that the server failed.
    pub fn internal(detail: impl std::fmt::Display) -> HttpError {
        tracing::error!(%detail, "internal error");
        HttpError::new(
            ErrorCode::Internal,
            None,
            "the server failed to complete the request; the detail is in its log",
        )
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> HttpError {
        let code = error.code;
        let mut http = HttpError::new(code, None, String::new());
        http.body = error.into();
        http
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> HttpError {
        match &error {
            StoreError::UnknownWorker(_) | StoreError::UnknownContainer(_) => {
                HttpError::not_found(error.to_string())
            }
            StoreError::InvalidArgument(message) => {
                HttpError::new(ErrorCode::InvalidArgument, None, message.clone())
            }
            StoreError::InvalidTransition { .. }
            | StoreError::StillOwns { .. }
            | StoreError::BelowReserved { .. } => HttpError::conflict(error.to_string()),
            StoreError::StaleEpoch { .. } => {
                HttpError::new(ErrorCode::StaleEpoch, Some("epoch"), error.to_string())
            }
            _ => HttpError::internal(error),
        }
    }
}

impl From<ProtocolError> for HttpError {
    fn from(error: ProtocolError) -> HttpError {
        match error {
            ProtocolError::UnknownWorker(_) | ProtocolError::UnknownContainer(_) => {
                HttpError::not_found(error.to_string())
            }
            ProtocolError::StaleEpoch { .. } => {
                HttpError::new(ErrorCode::StaleEpoch, Some("epoch"), error.to_string())
            }
            ProtocolError::NotHolder { .. }
            | ProtocolError::CannotRun { .. }
            | ProtocolError::StillHeld { .. } => HttpError::conflict(error.to_string()),
            ProtocolError::InvalidArgument { field, message } => {
                HttpError::new(ErrorCode::InvalidArgument, field.as_deref(), message)
            }
            ProtocolError::Unplaceable { .. } => {
                HttpError::new(ErrorCode::Unplaceable, None, error.to_string())
            }
            ProtocolError::Inconsistent(_) => HttpError::internal(error),
            ProtocolError::Store(error) => HttpError::from(error),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{ContainerId, WorkerId};

    #[test]
    fn store_errors_map_to_statuses() {
        let id = |s: &str| ContainerId::new(s).expect("valid id");
        let cases = [
            (StoreError::UnknownContainer(id("c")), StatusCode::NOT_FOUND),
            (
                StoreError::UnknownWorker(WorkerId::new("w").expect("valid id")),
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::InvalidArgument("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                StoreError::InvalidTransition {
                    container: id("c"),
                    from: berth_store::ContainerState::Exited,
                    why: "no".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                StoreError::Corrupt {
                    key: "k".into(),
                    field: "f".into(),
                    problem: "p".into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            let http = HttpError::from(error);
            assert_eq!(http.status, status);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                assert!(
                    !http.body.message.contains("corrupt"),
                    "{}",
                    http.body.message
                );
            }
        }
    }
}
