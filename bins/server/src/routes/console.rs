//! The admin and compliance console at `/console/`: three static files
//! compiled into the binary. It is a page of the public API only (it signs
//! in with a cookie session and calls `/api/v1`), so it holds no decision
//! of its own; its policy is [`crate::http::headers::CONSOLE_CSP`]: its own
//! script and style, nothing inline, nothing from elsewhere.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// Registers `/console`, `/console/` and its assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/console",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header(("Location", "/console/"))
                .finish()
        }),
    )
    .route(
        "/console/",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type(ContentType::html())
                .body(INDEX)
        }),
    )
    .route(
        "/console/console.js",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("text/javascript; charset=utf-8")
                .body(SCRIPT)
        }),
    )
    .route(
        "/console/console.css",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("text/css; charset=utf-8")
                .body(STYLE)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_no_inline_script_or_style_and_loads_only_its_own_files() {
        let lower = INDEX.to_ascii_lowercase();
        // Every <script> names a same-origin src and holds nothing.
        for (i, _) in lower.match_indices("<script") {
            let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |e| i + e)];
            assert!(tag.contains("src=\"/console/"), "inline script: {tag}");
        }
        assert!(!lower.contains("<style"), "inline style element");
        assert!(!lower.contains(" style="), "inline style attribute");
        assert!(!lower.contains(" on"), "inline event handler");
        assert!(!lower.contains("http://") && !lower.contains("https://"));
        // The script never builds markup from strings (no injection sink).
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!SCRIPT.contains(sink), "console.js uses {sink}");
        }
        assert!(!STYLE.contains("url("), "the style loads nothing");
    }
}
