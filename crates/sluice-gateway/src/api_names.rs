//! Naming the API a request called: `GET /articles/{id}`, from the route's declared
//! templates or, when none matches, by automatic normalisation
//! ([`sluice_model::api_template`]).
//!
//! One [`ApiNamer`] per route, kept across snapshots while the route's naming
//! settings are unchanged. Resolving a name allocates nothing once the name is
//! known: a declared template's names are built per method when the route is
//! compiled, and an automatic name is found by a hash computed over its pieces as
//! they are produced, in a copy-on-write map read without a lock. Only the first
//! request of a new automatic name builds it (under a mutex). A route keeps at most
//! `max_apis` automatic names; later ones count as `{other}`, and the first
//! overflow is logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::Method;
use parking_lot::Mutex;
use sluice_model::api_template::{automatic_api_name_pieces, ApiTemplate, OTHER_API};

/// Produces a name's pieces, in order, handing each to the function it is given.
type Pieces<'a> = dyn FnMut(&mut dyn FnMut(&str)) + 'a;

/// Methods whose names a declared template builds up front.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

/// What decides a route's names: a namer is reused while these are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamingSettings {
    /// Declared templates, as written.
    pub apis: Vec<String>,
    /// Most automatic names.
    pub max_apis: usize,
    /// The prefix removed before matching (the route's `strip_prefix`), if any.
    pub strip_prefix: Option<String>,
}

struct Declared {
    template: ApiTemplate,
    /// The name for each of [`METHODS`].
    names: [Arc<str>; METHODS.len()],
}

/// Names the APIs of one route.
pub struct ApiNamer {
    route: String,
    settings: NamingSettings,
    declared: Vec<Declared>,
    automatic: ArcSwap<HashMap<u64, Vec<Arc<str>>>>,
    insert: Mutex<usize>,
    overflow: AtomicU64,
    warned: AtomicBool,
    other: Arc<str>,
}

impl ApiNamer {
    /// A namer for route `route` (`namespace/name`, for the log line).
    pub fn new(route: String, settings: NamingSettings) -> Self {
        let mut declared: Vec<Declared> = settings
            .apis
            .iter()
            .filter_map(|text| ApiTemplate::parse(text).ok())
            .map(|template| Declared {
                names: std::array::from_fn(|i| {
                    Arc::from(format!("{} {}", METHODS[i], template.text))
                }),
                template,
            })
            .collect();
        // Stable: equally specific templates keep their declared order.
        declared.sort_by(|a, b| a.template.specificity_cmp(&b.template));
        ApiNamer {
            route,
            settings,
            declared,
            automatic: ArcSwap::from_pointee(HashMap::new()),
            insert: Mutex::new(0),
            overflow: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            other: Arc::from(OTHER_API),
        }
    }

    /// The settings this namer was built from.
    pub fn settings(&self) -> &NamingSettings {
        &self.settings
    }

    /// Requests counted as `{other}` because the route had `max_apis` names.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    /// The API that `method` on `path` (the request's path, without its query) calls.
    pub fn name(&self, method: &Method, path: &str) -> Arc<str> {
        let path = self.matched_part(path);
        if let Some(declared) = self.declared.iter().find(|d| d.template.matches(path)) {
            return match METHODS.iter().position(|m| m == method) {
                Some(slot) => Arc::clone(&declared.names[slot]),
                None => self.automatic_name(&mut |piece| {
                    piece(method.as_str());
                    piece(" ");
                    piece(&declared.template.text);
                }),
            };
        }
        self.automatic_name(&mut |piece| automatic_api_name_pieces(method.as_str(), path, piece))
    }

    /// The part of the path templates are matched against: after the route's prefix,
    /// when it strips one.
    fn matched_part<'a>(&self, path: &'a str) -> &'a str {
        let Some(prefix) = &self.settings.strip_prefix else {
            return path;
        };
        // As the upstream sees it, but borrowed: `/api` alone is `/`.
        match after_prefix(path, prefix) {
            "" => "/",
            rest => rest,
        }
    }

    /// Finds (or, under the cap, adds) the name whose pieces `pieces` produces.
    fn automatic_name(&self, pieces: &mut Pieces<'_>) -> Arc<str> {
        let hash = hash_pieces(pieces);
        if let Some(name) = self.find(hash, pieces) {
            return name;
        }
        let mut held = self.insert.lock();
        if let Some(name) = self.find(hash, pieces) {
            return name;
        }
        if *held >= self.settings.max_apis {
            drop(held);
            self.overflow.fetch_add(1, Ordering::Relaxed);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    route = %self.route,
                    max_apis = self.settings.max_apis,
                    "the route has max_apis API names; requests to further ones count as {OTHER_API}"
                );
            }
            return Arc::clone(&self.other);
        }
        let mut text = String::new();
        pieces(&mut |piece| text.push_str(piece));
        let name: Arc<str> = Arc::from(text);
        let mut next = HashMap::clone(&self.automatic.load());
        next.entry(hash).or_default().push(Arc::clone(&name));
        self.automatic.store(Arc::new(next));
        *held += 1;
        name
    }

    fn find(&self, hash: u64, pieces: &mut Pieces<'_>) -> Option<Arc<str>> {
        let names = self.automatic.load();
        names
            .get(&hash)?
            .iter()
            .find(|name| spells(name, pieces))
            .cloned()
    }
}

impl std::fmt::Debug for ApiNamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiNamer")
            .field("route", &self.route)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// FNV-1a over the pieces' bytes, as if they were one string.
fn hash_pieces(pieces: &mut Pieces<'_>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    pieces(&mut |piece| {
        for byte in piece.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    });
    hash
}

/// Whether the pieces, joined, are exactly `name`.
fn spells(name: &str, pieces: &mut Pieces<'_>) -> bool {
    let mut rest = name.as_bytes();
    let mut equal = true;
    pieces(&mut |piece| {
        if !equal {
            return;
        }
        match rest.strip_prefix(piece.as_bytes()) {
            Some(after) => rest = after,
            None => equal = false,
        }
    });
    equal && rest.is_empty()
}

/// What `strip_prefix` leaves of `path` under `prefix` (possibly without a leading
/// slash: `/apix` under `/api` leaves `x`); the whole path when it lacks the prefix.
pub(crate) fn after_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    path.strip_prefix(prefix).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namer(apis: &[&str], max_apis: usize, strip_prefix: Option<&str>) -> ApiNamer {
        ApiNamer::new(
            "default/r".into(),
            NamingSettings {
                apis: apis.iter().map(|a| (*a).to_owned()).collect(),
                max_apis,
                strip_prefix: strip_prefix.map(str::to_owned),
            },
        )
    }

    #[test]
    fn declared_templates_name_first_the_most_specific() {
        let apis = namer(
            &[
                "/static/{*path}",
                "/articles/{id}",
                "/articles/new",
                "/users/{uid}/orders",
            ],
            200,
            None,
        );
        let get = |path: &str| apis.name(&Method::GET, path).to_string();
        assert_eq!(get("/articles/7"), "GET /articles/{id}");
        assert_eq!(get("/articles/new"), "GET /articles/new");
        assert_eq!(get("/users/u-1/orders"), "GET /users/{uid}/orders");
        assert_eq!(get("/static/css/site.css"), "GET /static/{*path}");
        assert_eq!(
            apis.name(&Method::POST, "/articles/7").as_ref(),
            "POST /articles/{id}"
        );
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(
            apis.name(&purge, "/articles/7").as_ref(),
            "PURGE /articles/{id}"
        );
        // None matches: automatic.
        assert_eq!(get("/comments/99"), "GET /comments/{id}");
    }

    #[test]
    fn templates_match_after_the_stripped_prefix() {
        let apis = namer(&["/articles/{id}"], 200, Some("/blog"));
        assert_eq!(
            apis.name(&Method::GET, "/blog/articles/3").as_ref(),
            "GET /articles/{id}"
        );
        assert_eq!(apis.name(&Method::GET, "/blog").as_ref(), "GET /");
        assert_eq!(
            apis.name(&Method::GET, "/blog/x/12").as_ref(),
            "GET /x/{id}"
        );
    }

    #[test]
    fn a_known_name_is_the_same_allocation_every_time() {
        let apis = namer(&[], 200, None);
        let first = apis.name(&Method::GET, "/articles/1");
        let again = apis.name(&Method::GET, "/articles/2");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.as_ref(), "GET /articles/{id}");
        assert_eq!(
            sluice_model::api_template::automatic_api_name("GET", "/articles/1"),
            first.as_ref()
        );
    }

    #[test]
    fn names_past_the_cap_count_as_other() {
        let apis = namer(&["/declared"], 3, None);
        for i in 0..10 {
            apis.name(&Method::GET, &format!("/page{i}"));
        }
        assert_eq!(apis.name(&Method::GET, "/page0").as_ref(), "GET /page0");
        assert_eq!(apis.name(&Method::GET, "/page2").as_ref(), "GET /page2");
        assert_eq!(apis.name(&Method::GET, "/page3").as_ref(), OTHER_API);
        // Declared templates are always named.
        assert_eq!(
            apis.name(&Method::GET, "/declared").as_ref(),
            "GET /declared"
        );
        assert_eq!(apis.overflow(), 8);
    }

    #[test]
    fn pieces_hash_and_spell_as_the_joined_string() {
        let mut pieces = |piece: &mut dyn FnMut(&str)| {
            piece("GET");
            piece(" ");
            piece("/a");
        };
        assert!(spells("GET /a", &mut pieces));
        assert!(!spells("GET /ab", &mut pieces));
        assert!(!spells("GET /", &mut pieces));
        let mut whole = |piece: &mut dyn FnMut(&str)| piece("GET /a");
        assert_eq!(hash_pieces(&mut pieces), hash_pieces(&mut whole));
    }
}
