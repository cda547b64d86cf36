//! API templates: how a route names the endpoints behind it.
//!
//! An API is a method and a path template, such as `GET /articles/{id}`. A route
//! may declare its templates (`apis`), written as OpenAPI paths: literal segments,
//! `{name}` for exactly one non-empty segment, and `{*name}` as the last segment
//! for the rest of the path (zero or more segments). Requests that match none are
//! named by [`normalize_segment`], segment by segment.
//!
//! When several templates match, the most specific wins: compared from the left,
//! a literal segment beats a parameter, which beats a catch-all; between equally
//! specific ones, the one declared first.

use std::cmp::Ordering;

/// Most templates a route may declare.
pub const MAX_API_TEMPLATES: usize = 200;
/// Longest template, in bytes.
pub const MAX_API_TEMPLATE_LEN: usize = 512;
/// Default of a route's `max_apis`: the API names it keeps before counting the
/// rest under [`OTHER_API`].
pub const DEFAULT_MAX_APIS: usize = 200;
/// Largest `max_apis` a route may set.
pub const MAX_MAX_APIS: usize = 10_000;
/// The API name of requests past a route's `max_apis`.
pub const OTHER_API: &str = "{other}";
/// What an identifier-like segment becomes in an automatic name.
pub const ID_SEGMENT: &str = "{id}";

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSegment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param(String),
    /// `{*name}`: the rest of the path, zero or more segments (last only).
    Rest(String),
}

impl TemplateSegment {
    fn specificity(&self) -> u8 {
        match self {
            TemplateSegment::Literal(_) => 0,
            TemplateSegment::Param(_) => 1,
            TemplateSegment::Rest(_) => 2,
        }
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTemplate {
    /// The template as written (`/articles/{id}`): the path part of the API's name.
    pub text: String,
    /// Its segments (the text between slashes, after the leading one).
    pub segments: Vec<TemplateSegment>,
}

impl ApiTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, crate::ParseError> {
        Self::parse_text(text).map_err(|message| crate::ParseError::new(text, message))
    }

    fn parse_text(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} must start with /"));
        }
        if text.len() > MAX_API_TEMPLATE_LEN {
            return Err(format!("{text:?} is over {MAX_API_TEMPLATE_LEN} bytes"));
        }
        if text
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '?' || c == '#')
        {
            return Err(format!(
                "{text:?} holds a space, ?, # or a control character"
            ));
        }
        let parts: Vec<&str> = text[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(inner) => {
                    let (rest, name) = match inner.strip_prefix('*') {
                        Some(name) => (true, name),
                        None => (false, inner),
                    };
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(format!(
                            "{text:?}: {part:?} is not a parameter ({{name}} or {{*name}}, letters, digits, _ and -)"
                        ));
                    }
                    if rest && !last {
                        return Err(format!("{text:?}: {part:?} may only be the last segment"));
                    }
                    if rest {
                        TemplateSegment::Rest(name.to_owned())
                    } else {
                        TemplateSegment::Param(name.to_owned())
                    }
                }
                None if part.contains(['{', '}']) => {
                    return Err(format!(
                        "{text:?}: {part:?} mixes text and a parameter; a parameter is a whole segment"
                    ));
                }
                None => TemplateSegment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok(ApiTemplate {
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether `path` (without its query) matches this template.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for segment in &self.segments {
            match segment {
                TemplateSegment::Rest(_) => return true,
                TemplateSegment::Literal(text) => {
                    if parts.next() != Some(text.as_str()) {
                        return false;
                    }
                }
                TemplateSegment::Param(_) => match parts.next() {
                    Some(part) if !part.is_empty() => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    /// Orders templates most specific first (see the module documentation).
    pub fn specificity_cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match a.specificity().cmp(&b.specificity()) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        // Equal over the shorter one: both match a path only when the longer one's
        // extra segment is a catch-all matching nothing, so the shorter one is the
        // more specific (`/a` before `/a/{*rest}` for the path `/a`).
        self.segments.len().cmp(&other.segments.len())
    }
}

/// Checks a route's `apis` list and `max_apis`; the error names the entry at fault.
pub fn validate_api_templates(apis: &[String], max_apis: usize) -> Result<(), (String, String)> {
    if apis.len() > MAX_API_TEMPLATES {
        return Err((
            "spec.apis".into(),
            format!("at most {MAX_API_TEMPLATES} templates"),
        ));
    }
    for (i, text) in apis.iter().enumerate() {
        ApiTemplate::parse(text).map_err(|reason| (format!("spec.apis[{i}]"), reason.message))?;
        if apis[..i].contains(text) {
            return Err((
                format!("spec.apis[{i}]"),
                format!("{text:?} is listed twice"),
            ));
        }
    }
    if max_apis == 0 || max_apis > MAX_MAX_APIS {
        return Err((
            "spec.max_apis".into(),
            format!("must be within 1..={MAX_MAX_APIS}"),
        ));
    }
    Ok(())
}

/// Whether a path segment looks like an identifier, and so becomes [`ID_SEGMENT`]
/// in an automatic API name:
///
/// - a number: digits, possibly with `.` `,` `-` `_` `:` `+` between them
///   (`42`, `3.14`, `2024-01-31`, `12:30`);
/// - a UUID (`8-4-4-4-12` hex digits, any case);
/// - a hex string of 16 or more digits (`5f2b9c0e7a1d4e3f`, a SHA);
/// - a long token mixing letters and digits: 16 or more characters from
///   `A-Z a-z 0-9 _ -`, with letters and digits side by side at least three times
///   (`a8Kd93jQ0zLmP2xv`, an API key); slugs such as `release-notes-2024` stay.
pub fn is_identifier_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    if bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b".,-_:+".contains(b))
    {
        return true;
    }
    if is_uuid(bytes) {
        return true;
    }
    if bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    if bytes.len() >= 16
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    {
        let switches = bytes
            .windows(2)
            .filter(|pair| {
                (pair[0].is_ascii_alphabetic() && pair[1].is_ascii_digit())
                    || (pair[0].is_ascii_digit() && pair[1].is_ascii_alphabetic())
            })
            .count();
        return switches >= 3;
    }
    false
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A segment as it appears in an automatic API name.
pub fn normalize_segment(segment: &str) -> &str {
    if is_identifier_segment(segment) {
        ID_SEGMENT
    } else {
        segment
    }
}

/// Hands the pieces of the automatic API name of `method` and `path` (no query)
/// to `piece`, in order: what [`automatic_api_name`] joins, for callers that hash
/// or compare a name without building it.
pub fn automatic_api_name_pieces(method: &str, path: &str, piece: &mut dyn FnMut(&str)) {
    piece(method);
    piece(" ");
    let rooted = path.starts_with('/');
    if !rooted {
        piece("/");
    }
    for (i, segment) in path.trim_start_matches('/').split('/').enumerate() {
        if i > 0 || rooted {
            piece("/");
        }
        piece(normalize_segment(segment));
    }
}

/// The automatic API name of `method` and `path` (the query dropped):
/// `GET /articles/{id}` for `GET /articles/42?x=1`.
pub fn automatic_api_name(method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut name = String::with_capacity(method.len() + 1 + path.len());
    automatic_api_name_pieces(method, path, &mut |piece| name.push_str(piece));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_looking_paths_are_named_by_their_shape() {
        let table = [
            ("/articles/42", "GET /articles/{id}"),
            ("/articles/42?page=2", "GET /articles/{id}"),
            ("/articles/", "GET /articles/"),
            ("/", "GET /"),
            ("/health", "GET /health"),
            ("/v1/users/123/orders/456", "GET /v1/users/{id}/orders/{id}"),
            (
                "/users/6f1c2d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5/orders",
                "GET /users/{id}/orders",
            ),
            (
                "/users/6F1C2D3E-4B5A-4C6D-8E7F-90A1B2C3D4E5",
                "GET /users/{id}",
            ),
            (
                "/commits/9fceb02d0ae598e95dc970b74767f19372d61af8",
                "GET /commits/{id}",
            ),
            ("/blobs/5f2b9c0e7a1d4e3f", "GET /blobs/{id}"),
            ("/sessions/a8Kd93jQ0zLmP2xv", "GET /sessions/{id}"),
            ("/reports/2024-01-31", "GET /reports/{id}"),
            ("/prices/3.14", "GET /prices/{id}"),
            ("/docs/release-notes-2024", "GET /docs/release-notes-2024"),
            ("/static/app.js", "GET /static/app.js"),
            ("/api/v2/items", "GET /api/v2/items"),
            ("/deadbeef", "GET /deadbeef"),
            ("/abcdefabcdefabcdefXYZ", "GET /abcdefabcdefabcdefXYZ"),
            ("/search", "GET /search"),
        ];
        for (path, name) in table {
            assert_eq!(automatic_api_name("GET", path), name, "{path}");
        }
    }

    #[test]
    fn templates_parse_match_and_sort_most_specific_first() {
        let article = ApiTemplate::parse("/articles/{id}").unwrap();
        assert!(article.matches("/articles/1"));
        assert!(!article.matches("/articles/"));
        assert!(!article.matches("/articles/1/comments"));
        let rest = ApiTemplate::parse("/static/{*path}").unwrap();
        assert!(rest.matches("/static/"));
        assert!(rest.matches("/static/css/site.css"));
        assert!(!rest.matches("/other"));
        let new = ApiTemplate::parse("/articles/new").unwrap();
        let mut list = [rest.clone(), article.clone(), new.clone()];
        list.sort_by(ApiTemplate::specificity_cmp);
        assert_eq!(list, [new, article, rest]);
        // `/a` is matched by both; the exact one comes first.
        let exact = ApiTemplate::parse("/a").unwrap();
        let below = ApiTemplate::parse("/a/{*rest}").unwrap();
        assert!(exact.matches("/a") && below.matches("/a"));
        assert_eq!(exact.specificity_cmp(&below), std::cmp::Ordering::Less);
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for bad in [
            "articles/{id}",
            "/a/{*rest}/b",
            "/a/{}",
            "/a/x{id}",
            "/a/{id?}",
            "/a b",
        ] {
            assert!(ApiTemplate::parse(bad).is_err(), "{bad}");
        }
        let twice = ["/a".to_owned(), "/a".to_owned()];
        assert_eq!(
            validate_api_templates(&twice, 200).unwrap_err().0,
            "spec.apis[1]"
        );
        assert_eq!(
            validate_api_templates(&[], 0).unwrap_err().0,
            "spec.max_apis"
        );
    }
}
