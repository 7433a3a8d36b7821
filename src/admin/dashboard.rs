//! `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn on
//! `<canvas>` by hand, no asset from anywhere else) polling `GET /dashboard/data`.

use http::{HeaderValue, Response};

/// The page, embedded in the binary.
const PAGE: &str = include_str!("dashboard.html");

/// The page, with a policy that lets it load nothing but its own inline code and talk only
/// to this listener, and not be framed (its purge form).
pub(super) fn page() -> Response<Vec<u8>> {
    let mut r = super::routes::reply(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec());
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}
