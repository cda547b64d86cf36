//! Content formats, and the check every publish passes: content that does not
//! parse in its format is refused with the parser's message and the line it
//! stopped at.

use serde::{Deserialize, Serialize};

/// The format of an item's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Any text.
    Text,
    /// JSON (one value).
    Json,
    /// YAML (one or more documents).
    Yaml,
    /// TOML.
    Toml,
    /// Java `.properties`.
    Properties,
}

impl Format {
    /// Every format's name.
    pub const NAMES: [&'static str; 5] = ["text", "json", "yaml", "toml", "properties"];

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Toml => "toml",
            Format::Properties => "properties",
        }
    }

    /// Parses a format's name.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "text" | "txt" => Format::Text,
            "json" => Format::Json,
            "yaml" | "yml" => Format::Yaml,
            "toml" => Format::Toml,
            "properties" => Format::Properties,
            _ => return None,
        })
    }

    /// The format a key's extension suggests (`db.yaml` → YAML), for clients that
    /// leave the format out.
    pub fn from_key(key: &str) -> Format {
        key.rsplit_once('.')
            .and_then(|(_, ext)| Format::from_name(ext))
            .unwrap_or(Format::Text)
    }

    /// Checks that `content` parses; the error names the line (1-based).
    pub fn check(self, content: &str) -> Result<(), FormatError> {
        match self {
            Format::Text => Ok(()),
            Format::Json => serde_json::from_str::<serde::de::IgnoredAny>(content)
                .map(|_| ())
                .map_err(|e| FormatError {
                    format: self,
                    line: e.line(),
                    message: e.to_string(),
                }),
            Format::Yaml => check_yaml(content),
            Format::Toml => toml::from_str::<toml::Table>(content)
                .map(|_| ())
                .map_err(|e| FormatError {
                    format: self,
                    line: e.span().map_or(0, |span| line_of(content, span.start)),
                    message: e.message().trim().to_owned(),
                }),
            Format::Properties => check_properties(content),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Content that does not parse in its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content is not valid {format}: line {line}: {message}")]
pub struct FormatError {
    /// The format it was checked against.
    pub format: Format,
    /// The line the parser stopped at (1-based; 0 when the parser does not say).
    pub line: usize,
    /// The parser's message.
    pub message: String,
}

fn line_of(content: &str, offset: usize) -> usize {
    content
        .as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn check_yaml(content: &str) -> Result<(), FormatError> {
    for document in serde_yaml::Deserializer::from_str(content) {
        if let Err(error) = serde_yaml::Value::deserialize(document) {
            return Err(FormatError {
                format: Format::Yaml,
                line: error.location().map_or(0, |l| l.line()),
                message: error.to_string(),
            });
        }
    }
    Ok(())
}

/// Java's rules: any line is a key (with an empty value when it has no
/// separator); the one thing that fails to load is a malformed `\uXXXX` escape.
fn check_properties(content: &str) -> Result<(), FormatError> {
    for (index, line) in content.lines().enumerate() {
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                continue;
            }
            if chars.next() == Some('u') {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    return Err(FormatError {
                        format: Format::Properties,
                        line: index + 1,
                        message: format!("malformed \\uxxxx escape \\u{hex}"),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_content_passes_in_every_format() {
        Format::Json.check("{\"pool\": 10}").unwrap();
        Format::Yaml
            .check("pool: 10\nhosts: [a, b]\n---\nsecond: doc\n")
            .unwrap();
        Format::Toml
            .check("pool = 10\n[db]\nhost = \"a\"\n")
            .unwrap();
        Format::Properties
            .check("pool=10\nname = \\u0041bc\n# comment\nflag\n")
            .unwrap();
        Format::Text.check("anything at all {").unwrap();
    }

    #[test]
    fn bad_content_names_the_line() {
        let json = Format::Json.check("{\n\"pool\": 10,\n}").unwrap_err();
        assert_eq!(json.line, 3, "{json}");
        let yaml = Format::Yaml.check("pool: 10\nhosts: [a, b\n").unwrap_err();
        assert!(yaml.line >= 2, "{yaml}");
        assert!(yaml.to_string().contains("line"), "{yaml}");
        let tab = Format::Yaml.check("a: 1\nb:\n  c: 1\n d: 2\n").unwrap_err();
        assert!(tab.line >= 3, "{tab}");
        let toml = Format::Toml
            .check("pool = 10\n[db\nhost = 1\n")
            .unwrap_err();
        assert_eq!(toml.line, 2, "{toml}");
        let dup = Format::Toml.check("a = 1\na = 2\n").unwrap_err();
        assert_eq!(dup.line, 2, "{dup}");
        let props = Format::Properties.check("a=1\nb=\\u12G4\n").unwrap_err();
        assert_eq!(props.line, 2, "{props}");
    }

    #[test]
    fn names_and_extensions() {
        for name in Format::NAMES {
            assert_eq!(Format::from_name(name).map(Format::name), Some(name));
        }
        assert_eq!(Format::from_name("xml"), None);
        assert_eq!(Format::from_key("db.yml"), Format::Yaml);
        assert_eq!(Format::from_key("README"), Format::Text);
    }
}
