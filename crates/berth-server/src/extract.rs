//! Extractors that answer malformed input with an [`berth_api::ErrorBody`] instead of axum's
//! plain-text rejections: [`JsonBody`] (the field at fault named by its path), [`PathParams`]
//! and [`QueryParams`] (unknown parameters refused), and the id parsers the handlers use.

use crate::error::HttpError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use berth_api::ErrorCode;
use berth_core::{ContainerId, WorkerId};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// A JSON request body of type `T`. Refuses bodies over the router's limit (413), bodies
/// declared as something other than JSON (415), and malformed ones (400, naming the field).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        if let Some(kind) = req.headers().get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = kind.split(';').next().unwrap_or_default().trim();
            let json = essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"));
            if !json {
                return Err(HttpError::new(
                    ErrorCode::UnsupportedMediaType,
                    None,
                    format!(
                        "the body is declared as {essence:?}; send JSON with Content-Type: application/json"
                    ),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::new(
                    ErrorCode::PayloadTooLarge,
                    None,
                    "the body is larger than the server accepts; split the request (e.g. smaller batches)",
                )
            } else {
                HttpError::new(ErrorCode::InvalidJson, None, rejection.body_text())
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes a JSON body, naming the field at fault on error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::new(
            ErrorCode::InvalidJson,
            None,
            "the body is empty; send a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let field = field_of(&path, &message);
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {message}")
        } else {
            message
        };
        HttpError::new(ErrorCode::InvalidJson, field.as_deref(), message)
    })?;
    deserializer.end().map_err(|error| {
        HttpError::new(
            ErrorCode::InvalidJson,
            None,
            format!("the body has data after its JSON value: {error}"),
        )
    })?;
    Ok(value)
}

/// The field a deserialization error is about: its path, with the name of an unknown field
/// appended (serde reports those at the enclosing object).
fn field_of(path: &str, message: &str) -> Option<String> {
    let base = if path == "." || path == "?" {
        String::new()
    } else {
        path.to_owned()
    };
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let field = match unknown {
        Some(name) if base.is_empty() => name.to_owned(),
        Some(name) if !base.ends_with(name) => format!("{base}.{name}"),
        _ => base,
    };
    (!field.is_empty()).then_some(field)
}

/// Path parameters; a malformed one is a 400 with an [`berth_api::ErrorBody`].
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(HttpError::new(
                ErrorCode::InvalidArgument,
                None,
                rejection.body_text(),
            )),
        }
    }
}

/// Query parameters as a map, for handlers that parse and name each one; a malformed
/// query string is a 400 with an [`berth_api::ErrorBody`].
#[derive(Debug, Clone, Default)]
pub struct QueryParams(pub BTreeMap<String, String>);

impl<S> FromRequestParts<S> for QueryParams
where
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        match Query::<BTreeMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(map)) => Ok(QueryParams(map)),
            Err(rejection) => Err(HttpError::new(
                ErrorCode::InvalidArgument,
                None,
                rejection.body_text(),
            )),
        }
    }
}

impl QueryParams {
    /// Refuses any parameter not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), HttpError> {
        match self.0.keys().find(|key| !known.contains(&key.as_str())) {
            Some(key) => Err(HttpError::invalid(
                key,
                format!("unknown query parameter; expected {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// The largest integer a query parameter takes: the top of the OpenAPI document's
    /// `int64`, so that a client generated from it never sends a value refused as too big
    /// and the server never accepts one beyond what the document allows.
    pub const MAX_INTEGER: u64 = i64::MAX as u64;

    /// An integer parameter in `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, HttpError> {
        let Some(raw) = self.0.get(name) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(HttpError::invalid(
                name,
                format!("must be a whole number from {min} to {max}, got {raw:?}"),
            )),
        }
    }

    /// A required integer parameter in `min..=max`.
    pub fn required(&self, name: &str, min: u64, max: u64) -> Result<u64, HttpError> {
        if !self.0.contains_key(name) {
            return Err(HttpError::invalid(
                name,
                format!("is required: a whole number from {min} to {max}"),
            ));
        }
        self.number(name, min, min, max)
    }

    /// A raw parameter, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Parses a container id from a path parameter.
pub fn container_id(raw: &str) -> Result<ContainerId, HttpError> {
    ContainerId::new(raw).map_err(|e| HttpError::invalid("id", e.to_string()))
}

/// Parses a worker id from a path parameter.
pub fn worker_id(raw: &str) -> Result<WorkerId, HttpError> {
    WorkerId::new(raw).map_err(|e| HttpError::invalid("id", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::ContainerSpec;

    fn field(body: &str) -> Option<String> {
        parse::<ContainerSpec>(body.as_bytes())
            .expect_err("refused")
            .body
            .field
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field(r#"{"cpu_millicores": -1, "memory_mib": 1, "command": ["a"]}"#).as_deref(),
            Some("cpu_millicores")
        );
        assert_eq!(
            field(r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "cpus": 1}"#)
                .as_deref(),
            Some("cpus")
        );
        assert_eq!(
            field(
                r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1, "kind": "x"}}"#
            )
            .as_deref(),
            Some("gpu.kind")
        );
        assert_eq!(
            field(r#"{"cpu_millicores": 1, "memory_mib": 1, "command": [1]}"#).as_deref(),
            Some("command[0]")
        );
        assert_eq!(field(r#"{"cpu_millicores": 1"#), None);
    }

    #[test]
    fn empty_and_trailing_bodies_are_refused() {
        assert!(parse::<ContainerSpec>(b"").is_err());
        assert!(parse::<ContainerSpec>(b" {} {}").is_err());
    }
}
