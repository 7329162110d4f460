//! The public reads (`GET /v1/availability` and `GET /v1/venues` without a
//! credential), served from bytes prepared at most once a second per query
//! variant: the JSON, its gzip and its brotli, and a strong `ETag` (a hash
//! of the JSON). Launch morning is mostly people looking; this way a look
//! costs a map lookup and a copy of prepared bytes, not a serialisation.
//!
//! Freshness: a variant older than `REFRESH_AFTER` is rebuilt by a
//! background task while it is still served, and one older than
//! `PREPARED_MAX_AGE` by the request that finds it so (API.md lets
//! availability lag commits by up to one second), so neither a body nor a
//! `304` ever hides a change older than that. At most `PREPARED_VARIANTS_MAX` variants are kept; when full,
//! expired ones are dropped first, and a query beyond that is answered
//! from bytes built for it alone.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

/// The oldest prepared bytes are ever served (API.md: availability may lag
/// commits by up to a second).
pub const PREPARED_MAX_AGE: Duration = Duration::from_secs(1);
/// From this age on, prepared bytes are rebuilt in the background while
/// they are still served: a whole day's rebuild takes 2–6 ms, which a
/// worker thread should not spend with other requests waiting on it.
pub const REFRESH_AFTER: Duration = Duration::from_millis(500);
/// Most query variants kept prepared at once.
pub const PREPARED_VARIANTS_MAX: usize = 4096;
/// `Cache-Control` of a public read: a cache may keep it for a second and
/// serve it a little longer while it asks again.
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=1, stale-while-revalidate=2";
/// brotli's quality for prepared bodies (0–11): 5 is most of the size win
/// for a small part of the top quality's time.
const BROTLI_QUALITY: u32 = 5;
const BROTLI_WINDOW_BITS: u32 = 22;

/// One representation, ready to send.
pub struct Prepared {
    built_at: Instant,
    identity: Bytes,
    gzip: Bytes,
    brotli: Bytes,
    /// The strong ETag of each encoding (by `Encoding as usize`): a hash of
    /// the JSON, with a suffix for the compressed ones. Made once, here,
    /// not per answer.
    etags: [HeaderValue; 3],
}

impl Prepared {
    pub fn new(identity: Vec<u8>) -> Self {
        let digest = Sha256::digest(&identity);
        let tag: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        let etags = ["", "-gzip", "-br"].map(|suffix| {
            HeaderValue::from_str(&format!("\"{tag}{suffix}\""))
                .expect("hex and a suffix are a valid header")
        });
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&identity)
            .expect("gzip into memory cannot fail");
        let gzip = gzip.finish().expect("gzip into memory cannot fail");
        let mut brotli = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(
                &mut brotli,
                4096,
                BROTLI_QUALITY,
                BROTLI_WINDOW_BITS,
            );
            writer
                .write_all(&identity)
                .expect("brotli into memory cannot fail");
        }
        Self {
            built_at: Instant::now(),
            identity: Bytes::from(identity),
            gzip: Bytes::from(gzip),
            brotli: Bytes::from(brotli),
            etags,
        }
    }

    /// The uncompressed bytes.
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    fn is_fresh(&self) -> bool {
        self.built_at.elapsed() < PREPARED_MAX_AGE
    }

    fn etag(&self, encoding: Encoding) -> HeaderValue {
        self.etags[encoding as usize].clone()
    }

    /// The body in `encoding`: a shared reference to the prepared bytes,
    /// not a copy.
    fn body(&self, encoding: Encoding) -> Bytes {
        match encoding {
            Encoding::Identity => self.identity.clone(),
            Encoding::Gzip => self.gzip.clone(),
            Encoding::Brotli => self.brotli.clone(),
        }
    }

    /// Whether `If-None-Match` names this representation in any encoding
    /// (they are the same JSON).
    fn matches(&self, request: &HttpRequest) -> bool {
        request
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || self.etags.iter().any(|e| e.as_bytes() == t.as_bytes()))
    }
}

/// The encodings prepared bytes come in (the discriminant indexes `etags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

/// Keeps `prepared` as `variant`, within `PREPARED_VARIANTS_MAX` (expired
/// variants are dropped first when full; beyond that it is not kept).
fn store(variants: &DashMap<String, Arc<Prepared>>, variant: &str, prepared: Arc<Prepared>) {
    if variants.len() >= PREPARED_VARIANTS_MAX && !variants.contains_key(variant) {
        variants.retain(|_, p| p.is_fresh());
    }
    if variants.len() < PREPARED_VARIANTS_MAX || variants.contains_key(variant) {
        variants.insert(variant.to_owned(), prepared);
    }
}

/// The best encoding the client accepts: brotli, then gzip, then none.
pub fn negotiate(request: &HttpRequest) -> Encoding {
    let mut gzip = false;
    let mut brotli = false;
    for value in request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            match name.as_str() {
                "br" => brotli = true,
                "gzip" | "x-gzip" => gzip = true,
                "*" => {
                    brotli = true;
                    gzip = true;
                }
                _ => {}
            }
        }
    }
    if brotli {
        Encoding::Brotli
    } else if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// The prepared variants of the public reads.
#[derive(Default)]
pub struct PublicReads {
    variants: Arc<DashMap<String, Arc<Prepared>>>,
    /// Variants being rebuilt in the background now.
    refreshing: Arc<DashMap<String, ()>>,
}

impl PublicReads {
    /// The prepared bytes of `variant`. Younger than `REFRESH_AFTER`: as
    /// they are. Older: still served, while one background task (never a
    /// request's worker thread: a rebuild of a whole day takes milliseconds)
    /// rebuilds them with `build`. Missing, or older than
    /// `PREPARED_MAX_AGE` (the background fell behind): built here.
    pub fn get_or_build(
        &self,
        variant: &str,
        build: impl FnOnce() -> Vec<u8> + Send + 'static,
    ) -> Arc<Prepared> {
        if let Some(prepared) = self.variants.get(variant).map(|p| Arc::clone(&p)) {
            let age = prepared.built_at.elapsed();
            if age < REFRESH_AFTER {
                return prepared;
            }
            if age < PREPARED_MAX_AGE {
                if self.refreshing.insert(variant.to_owned(), ()).is_none() {
                    let (variants, refreshing) =
                        (Arc::clone(&self.variants), Arc::clone(&self.refreshing));
                    let key = variant.to_owned();
                    tokio::task::spawn_blocking(move || {
                        let fresh = Arc::new(Prepared::new(build()));
                        store(&variants, &key, fresh);
                        refreshing.remove(&key);
                    });
                }
                return prepared;
            }
        }
        let prepared = Arc::new(Prepared::new(build()));
        store(&self.variants, variant, Arc::clone(&prepared));
        prepared
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.variants.len()
    }
}

/// The answer to a public read: `304` when the client's copy is current,
/// else the prepared body in the best accepted encoding.
pub fn answer(request: &HttpRequest, prepared: &Prepared) -> HttpResponse {
    respond(
        request,
        prepared,
        "application/json",
        PUBLIC_CACHE_CONTROL,
        &[],
    )
}

/// Prepared bytes as an answer (the public reads, and the web pages'
/// files): `304` when `If-None-Match` names them, else the best accepted
/// encoding, with its own strong `ETag`, `Vary: Accept-Encoding`, and
/// `extra` headers on both.
pub fn respond(
    request: &HttpRequest,
    prepared: &Prepared,
    content_type: &'static str,
    cache_control: &'static str,
    extra: &[(header::HeaderName, &'static str)],
) -> HttpResponse {
    let encoding = negotiate(request);
    let unchanged = prepared.matches(request);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, prepared.etag(encoding)))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::VARY, "Accept-Encoding"));
    for (name, value) in extra {
        response.insert_header((name.clone(), *value));
    }
    if unchanged {
        return response.finish();
    }
    match encoding {
        Encoding::Identity => {}
        Encoding::Gzip => {
            response.insert_header((header::CONTENT_ENCODING, "gzip"));
        }
        Encoding::Brotli => {
            response.insert_header((header::CONTENT_ENCODING, "br"));
        }
    }
    response
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .body(prepared.body(encoding))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn each_encoding_decodes_to_exactly_the_json() {
        let json: Vec<u8> = serde_json::to_vec(&serde_json::json!({
            "days": (0..200).map(|i| serde_json::json!({"venue_id": format!("clinic-{i:03}"), "slots": [1, 2, 3]})).collect::<Vec<_>>()
        }))
        .unwrap();
        let prepared = Prepared::new(json.clone());
        let mut gunzipped = Vec::new();
        flate2::read::GzDecoder::new(&prepared.gzip[..])
            .read_to_end(&mut gunzipped)
            .unwrap();
        assert_eq!(gunzipped, json);
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(&prepared.brotli[..], 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, json);
        assert!(
            prepared.gzip.len() * 10 < json.len(),
            "gzip shrinks a repetitive day"
        );
        assert!(prepared.brotli.len() <= prepared.gzip.len());
    }

    #[test]
    fn the_best_accepted_encoding_is_chosen() {
        let with = |value: &str| {
            let request = actix_web::test::TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, value))
                .to_http_request();
            negotiate(&request)
        };
        assert_eq!(with("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(with("gzip"), Encoding::Gzip);
        assert_eq!(with("br;q=0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(with("identity"), Encoding::Identity);
        assert_eq!(with("*"), Encoding::Brotli);
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(negotiate(&none), Encoding::Identity);
    }

    #[tokio::test]
    async fn variants_are_bounded_and_rebuilt_when_old() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = PublicReads::default();
        let builds = Arc::new(AtomicUsize::new(0));
        let counted = |builds: &Arc<AtomicUsize>| {
            let builds = Arc::clone(builds);
            move || {
                builds.fetch_add(1, Ordering::SeqCst);
                b"{}".to_vec()
            }
        };
        for _ in 0..3 {
            reads.get_or_build("a", counted(&builds));
        }
        assert_eq!(
            builds.load(Ordering::SeqCst),
            1,
            "a fresh variant is not rebuilt"
        );
        // Past REFRESH_AFTER: served as it is, rebuilt once in the background.
        tokio::time::sleep(REFRESH_AFTER + Duration::from_millis(50)).await;
        let old = reads.get_or_build("a", counted(&builds));
        reads.get_or_build("a", counted(&builds));
        assert!(
            old.built_at.elapsed() >= REFRESH_AFTER,
            "the old bytes were served"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while builds.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "no background rebuild");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            builds.load(Ordering::SeqCst),
            2,
            "one rebuild, not one per request"
        );
        assert!(reads.get_or_build("a", counted(&builds)).built_at.elapsed() < REFRESH_AFTER);
        for i in 0..PREPARED_VARIANTS_MAX + 10 {
            reads.get_or_build(&i.to_string(), || b"{}".to_vec());
        }
        assert!(reads.len() <= PREPARED_VARIANTS_MAX);
    }
}
