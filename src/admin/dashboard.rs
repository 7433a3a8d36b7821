//! `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn on
//! `<canvas>` by hand, no asset from anywhere else) polling `GET /dashboard/data`.

/// The page, embedded in the binary.
pub(super) const PAGE: &str = include_str!("dashboard.html");
