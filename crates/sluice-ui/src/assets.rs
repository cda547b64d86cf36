//! The console's static files, embedded in the binary: uPlot and htmx (vendored
//! from the npm registry, see `assets/vendor/VENDORED.md`) and the console's own
//! script and styles. Names carry a version, so browsers may cache them for good.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// uPlot's script.
pub const UPLOT: &str = "uPlot-1.6.32.iife.min.js";
/// uPlot's styles.
pub const UPLOT_CSS: &str = "uPlot-1.6.32.min.css";
/// htmx.
pub const HTMX: &str = "htmx-2.0.11.min.js";
/// The console's script (charts, refresh hooks).
pub const CONSOLE_JS: &str = concat!("console-", env!("CARGO_PKG_VERSION"), ".js");
/// The console's styles.
pub const CONSOLE_CSS: &str = concat!("console-", env!("CARGO_PKG_VERSION"), ".css");

const FILES: [(&str, &str, &[u8]); 5] = [
    (
        UPLOT,
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.iife.min.js"),
    ),
    (
        UPLOT_CSS,
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.min.css"),
    ),
    (
        HTMX,
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/htmx.min.js"),
    ),
    (
        CONSOLE_JS,
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        CONSOLE_CSS,
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
];

/// `GET /ui/assets/{name}` (no token needed: the files hold no data).
pub async fn serve(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
