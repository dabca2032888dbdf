//! The web console's shell: one HTML page, its script and its style sheet, compiled into
//! the binary from `crates/berth-server/console/` (plain files, their own source: no build
//! step, nothing loaded from elsewhere).
//!
//! The shell is public and holds no data: the script asks the API for everything, with
//! the bearer token the user enters (kept in the tab's `sessionStorage`), so the console
//! shows exactly what that token may see. The script builds the page with DOM calls and
//! text nodes only, never HTML strings, so names, commands, reasons and logs cannot inject
//! markup; the Content-Security-Policy below forbids inline and foreign scripts as a
//! second line.

use axum::http::header;
use axum::response::IntoResponse;

/// Scripts, styles, images and API calls from this origin only; no frames, no plugins.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self'; connect-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the console's page.
pub async fn page() -> impl IntoResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    )
}

/// `GET /console/app.js`: the console's script.
pub async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    )
}

/// `GET /console/app.css`: the console's style sheet.
pub async fn style() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../console/app.css"),
    )
}

/// `body` as `content_type`, under the console's security policy. `no-cache` makes a
/// browser ask again (cheaply) after an upgrade instead of running an old script against
/// a new API.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
