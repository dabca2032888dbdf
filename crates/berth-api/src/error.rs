//! Errors on the wire: the [`ErrorBody`] every failed request answers with, its
//! [`ErrorCode`], and [`ApiError`], the validation error of the API's own types.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// What went wrong, as a stable machine-readable code. Each code has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON, or not of the expected shape (a wrong type, a missing or
    /// unknown field).
    InvalidJson,
    /// 400: a value is out of range or malformed (ids, GPU types, resources, query
    /// parameters).
    InvalidArgument,
    /// 401: no token, a malformed one, or one that is not known (never issued, or
    /// revoked). Send `Authorization: Bearer <token>`.
    Unauthenticated,
    /// 403: the token is valid but may not do this (another tenant's or another worker's
    /// business, or an operator's).
    Forbidden,
    /// 404: no such container, worker or route.
    NotFound,
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 409: the state forbids it (a stale attempt reporting, a worker that still owns
    /// containers, a registration below what is reserved).
    Conflict,
    /// 409: a worker agent's call under a stale epoch (the worker registered again, or was
    /// declared lost after missing its heartbeats). Register again, and stop the running
    /// containers the registration does not list as owned.
    StaleEpoch,
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// 414: the request target (path and query) is longer than the server accepts.
    UriTooLong,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType,
    /// 422: well-formed, but no worker or pool could ever run it (it never fits, or no pool
    /// matches its selector, GPU types and preemptibility). Nothing was written.
    Unplaceable,
    /// 431: the request's headers are larger, or more numerous, than the server accepts.
    HeadersTooLarge,
    /// 500: the server or its store failed; the detail is in the server's log.
    Internal,
    /// 503: the server cannot reach its store.
    Unavailable,
    /// A code this client does not know (a newer server).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as it appears on the wire: `invalid_json`, `not_found`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unplaceable => "unplaceable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Other => "other",
        }
    }

    /// The HTTP status the server answers this code with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::StaleEpoch => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unplaceable => 422,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::Internal | ErrorCode::Other => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, machine-readable.
    pub code: ErrorCode,
    /// What went wrong and what to do about it, for people.
    pub message: String,
    /// The input field at fault, as a path (`cpu_millicores`, `gpu.types[1]`,
    /// `containers[3].pool`, or a path or query parameter such as `id`, `limit`), if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

/// A request the API refuses before anything is written: malformed, out of range, or
/// unplaceable. Converts into the [`ErrorBody`] the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", ErrorBody::from(self.clone()))]
pub struct ApiError {
    /// What went wrong.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// The field at fault, if one is.
    pub field: Option<String>,
}

impl ApiError {
    /// An error of `code` about `field`.
    pub fn new(code: ErrorCode, field: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field,
        }
    }

    /// An invalid value in `field` (400 `invalid_argument`).
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, Some(field.into()), message)
    }

    /// The same error with its field put under `prefix` (`containers[3]` + `pool` gives
    /// `containers[3].pool`), or naming `prefix` when it had no field.
    #[must_use]
    pub fn under(mut self, prefix: &str) -> ApiError {
        self.field = Some(match self.field {
            Some(field) if field.starts_with('[') => format!("{prefix}{field}"),
            Some(field) => format!("{prefix}.{field}"),
            None => prefix.to_owned(),
        });
        self
    }
}

impl From<ApiError> for ErrorBody {
    fn from(error: ApiError) -> ErrorBody {
        ErrorBody {
            code: error.code,
            message: error.message,
            field: error.field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_deserialize_as_other() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"brand_new","message":"m"}"#).expect("parses");
        assert_eq!(body.code, ErrorCode::Other);
        assert_eq!(body.field, None);
    }

    #[test]
    fn fields_nest_under_a_prefix() {
        let error = ApiError::invalid("gpu.types[1]", "bad");
        assert_eq!(
            error.under("containers[2]").field.as_deref(),
            Some("containers[2].gpu.types[1]")
        );
        let error = ApiError::new(ErrorCode::Unplaceable, None, "no");
        assert_eq!(
            error.under("containers[0]").field.as_deref(),
            Some("containers[0]")
        );
    }

    #[test]
    fn codes_round_trip_and_map_to_statuses() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::InvalidArgument,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unplaceable,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
        ] {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
