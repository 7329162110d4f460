//! The web pages (API.md "Web pages"): static HTML, CSS and JavaScript from
//! `web/`, embedded in the binary at build time, so a ward runs one binary
//! and nothing else. Every page talks to the same `/v1` API as any client.
//!
//! Caching: each file's strong `ETag` is a hash of its bytes (with a
//! suffix per encoding: files are gzipped and brotli'd once, at start). A page's
//! HTML names its scripts and styles with that hash (`?v=…`, filled in when
//! the table is built), so an asset asked for by its current hash may be
//! kept for a year; the HTML itself is revalidated on every load (`no-cache`,
//! answered `304` when unchanged). Every answer carries a strict
//! `Content-Security-Policy`: scripts and styles only from files of this
//! origin, never inline.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::codes::ErrorCode;
use super::problem::ApiError;
use super::public_reads::{self, Prepared};

/// What a page may load and talk to: its own origin only, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// `Cache-Control` of a page's HTML: keep it, but ask every time.
pub const PAGE_CACHE_CONTROL: &str = "no-cache";
/// `Cache-Control` of an asset asked for by its current content hash.
pub const HASHED_ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of an asset asked for without (or with an old) hash.
pub const ASSET_CACHE_CONTROL: &str = "public, max-age=300";

/// Hex digits of the content hash in an `ETag` and a `?v=`.
const HASH_HEX_DIGITS: usize = 16;

/// One file of `web/`, as it is served.
pub struct Asset {
    /// Where it is served (`/`, `/operator/`, `/assets/common.js`, …).
    pub path: &'static str,
    pub content_type: &'static str,
    /// The content hash (`HASH_HEX_DIGITS` hex digits).
    pub hash: String,
    /// The bytes, gzipped and brotli'd once, with their ETags.
    prepared: Prepared,
}

impl Asset {
    fn new(path: &'static str, content_type: &'static str, bytes: Vec<u8>) -> Self {
        let digest = Sha256::digest(&bytes);
        let hash: String = digest
            .iter()
            .take(HASH_HEX_DIGITS / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            path,
            content_type,
            prepared: Prepared::new(bytes),
            hash,
        }
    }

    fn is_page(&self) -> bool {
        self.path.ends_with('/')
    }
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The scripts and styles pages share or own, served under `/assets/`.
const ASSET_FILES: [(&str, &str, &str); 8] = [
    (
        "/assets/favicon.svg",
        SVG,
        include_str!("../../web/common/favicon.svg"),
    ),
    (
        "/assets/common.css",
        CSS,
        include_str!("../../web/common/common.css"),
    ),
    (
        "/assets/common.js",
        JS,
        include_str!("../../web/common/common.js"),
    ),
    (
        "/assets/messages.js",
        JS,
        include_str!("../../web/common/messages.js"),
    ),
    (
        "/assets/resident.js",
        JS,
        include_str!("../../web/resident/resident.js"),
    ),
    (
        "/assets/operator.js",
        JS,
        include_str!("../../web/operator/operator.js"),
    ),
    (
        "/assets/staff.js",
        JS,
        include_str!("../../web/staff/staff.js"),
    ),
    ("/assets/sre.js", JS, include_str!("../../web/sre/sre.js")),
];

/// The pages, by the path they are served at.
const PAGE_FILES: [(&str, &str); 4] = [
    ("/", include_str!("../../web/resident/index.html")),
    ("/operator/", include_str!("../../web/operator/index.html")),
    ("/staff/", include_str!("../../web/staff/index.html")),
    ("/sre/", include_str!("../../web/sre/index.html")),
];

/// Every served file: the assets first, then the pages with their asset
/// references pinned to the assets' hashes.
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    let mut assets: Vec<Asset> = ASSET_FILES
        .iter()
        .map(|(path, kind, text)| Asset::new(path, kind, text.as_bytes().to_vec()))
        .collect();
    let pages: Vec<Asset> = PAGE_FILES
        .iter()
        .map(|(path, text)| {
            let mut html = (*text).to_owned();
            for asset in &assets {
                html = html.replace(
                    &format!("\"{}\"", asset.path),
                    &format!("\"{}?v={}\"", asset.path, asset.hash),
                );
            }
            Asset::new(path, HTML, html.into_bytes())
        })
        .collect();
    assets.extend(pages);
    assets
});

fn asset_at(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The headers every page and file answer carries, besides caching.
const PAGE_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Serves a page or file, `304` when the client's copy is current,
/// compressed when the client accepts it.
fn serve(request: &HttpRequest, asset: &'static Asset) -> HttpResponse {
    let cache_control = if asset.is_page() {
        PAGE_CACHE_CONTROL
    } else if request.query_string().strip_prefix("v=") == Some(asset.hash.as_str()) {
        HASHED_ASSET_CACHE_CONTROL
    } else {
        ASSET_CACHE_CONTROL
    };
    public_reads::respond(
        request,
        &asset.prepared,
        asset.content_type,
        cache_control,
        &PAGE_HEADERS,
    )
}

/// `GET /`, `/operator/`, `/staff/`, `/sre/`.
pub async fn page(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    asset_at(request.path())
        .map(|asset| serve(&request, asset))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such page"))
}

/// `GET /operator` and the like: the page lives at the path with a slash.
pub async fn to_page_with_slash(request: HttpRequest) -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, format!("{}/", request.path())))
        .finish()
}

/// `GET /assets/{name}`.
pub async fn asset(
    request: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    asset_at(&format!("/assets/{name}"))
        .map(|asset| serve(&request, asset))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_names_its_assets_by_their_current_hash() {
        for page in ASSETS.iter().filter(|a| a.is_page()) {
            let html = std::str::from_utf8(page.prepared.identity()).unwrap();
            for referenced in html.split("\"/assets/").skip(1) {
                let reference = referenced.split('"').next().unwrap();
                let (name, version) = reference
                    .split_once("?v=")
                    .unwrap_or_else(|| panic!("{}: /assets/{reference} has no hash", page.path));
                let asset = asset_at(&format!("/assets/{name}"))
                    .unwrap_or_else(|| panic!("{}: /assets/{name} is not served", page.path));
                assert_eq!(version, asset.hash, "{}: {name}", page.path);
            }
        }
    }

    #[test]
    fn pages_have_no_inline_script_or_style_and_are_japanese() {
        for page in ASSETS.iter().filter(|a| a.is_page()) {
            let html = std::str::from_utf8(page.prepared.identity()).unwrap();
            assert!(html.contains("<html lang=\"ja\">"), "{}", page.path);
            assert!(!html.contains(" style="), "{}: inline style", page.path);
            assert!(!html.contains("<style"), "{}: inline style", page.path);
            let inline_handler = html.split(" on").skip(1).any(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!inline_handler, "{}: inline event handler", page.path);
            for script in html.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap();
                assert!(
                    tag.contains("src=\"/assets/"),
                    "{}: inline script",
                    page.path
                );
            }
        }
    }

    #[test]
    fn every_error_code_has_a_message_for_people() {
        let messages = ASSET_FILES
            .iter()
            .find(|(path, ..)| *path == "/assets/messages.js")
            .map(|(_, _, text)| *text)
            .unwrap();
        for code in ErrorCode::ALL {
            assert!(
                messages.contains(&format!("\n  {}: {{", code.as_str())),
                "web/common/messages.js has no message for {}",
                code.as_str()
            );
        }
    }
}
