//! berth's limits on a request's head: the request target's length (414) and the headers'
//! size and number (431), answered with an [`berth_api::ErrorBody`] like every other error.
//! hyper would answer these itself with an empty body, so its own limits are set above
//! these (see [`crate::listener`]).

use crate::ServerConfig;
use crate::error::HttpError;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ErrorCode;

/// The most headers a request may carry.
pub(crate) const MAX_HEADERS: usize = 100;

/// The head limits of a configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    max_uri_bytes: usize,
    max_header_bytes: usize,
}

impl HeadLimits {
    pub(crate) fn of(config: &ServerConfig) -> HeadLimits {
        HeadLimits {
            max_uri_bytes: config.max_uri_bytes,
            max_header_bytes: config.max_header_bytes,
        }
    }

    /// The refusal of a request whose head is over a limit, if it is.
    fn refusal(self, request: &Request) -> Option<HttpError> {
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if target > self.max_uri_bytes {
            return Some(HttpError::new(
                ErrorCode::UriTooLong,
                None,
                format!(
                    "the request target is {target} bytes, more than the {} the server accepts",
                    self.max_uri_bytes
                ),
            ));
        }
        let headers = request.headers();
        if headers.len() > MAX_HEADERS {
            return Some(too_large(format!(
                "the request has {} headers, more than the {MAX_HEADERS} the server accepts",
                headers.len()
            )));
        }
        let size = header_bytes(headers);
        (size > self.max_header_bytes).then(|| {
            too_large(format!(
                "the headers are {size} bytes, more than the {} the server accepts",
                self.max_header_bytes
            ))
        })
    }
}

fn too_large(message: String) -> HttpError {
    HttpError::new(ErrorCode::HeadersTooLarge, None, message)
}

/// The headers' size as sent: each name and value with `": "` and a line break.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Refuses a request whose head is over a limit, before it is routed further.
pub(crate) async fn refuse_oversize_head(
    limits: HeadLimits,
    request: Request,
    next: Next,
) -> Response {
    match limits.refusal(&request) {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    }
}
