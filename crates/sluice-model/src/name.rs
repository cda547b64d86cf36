//! Names of namespaces, services, instances and resources.

/// Longest accepted name, in bytes (as a DNS label).
pub const NAME_MAX_LEN: usize = 63;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What was being named ("namespace", "service", ...).
        what: &'static str,
    },
    /// The name is longer than [`NAME_MAX_LEN`].
    #[error("{what} {name:?} is {len} bytes long, over the limit of {max}")]
    TooLong {
        /// What was being named.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside `a-z A-Z 0-9 - _ .`.
    #[error("{what} {name:?} holds {found:?} at byte {at}; use letters, digits, '-', '_' and '.'")]
    BadCharacter {
        /// What was being named.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts or ends with a separator.
    #[error("{what} {name:?} must start and end with a letter or digit")]
    BadEdge {
        /// What was being named.
        what: &'static str,
        /// The rejected name.
        name: String,
    },
}

/// Checks a namespace, service, instance or resource name.
///
/// Names are 1 to 63 bytes of ASCII letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit — safe in URLs, store keys, metric labels and file
/// names without escaping. `what` names the thing in the error message.
///
/// ```
/// assert!(sluice_model::validate_name("service", "echo-v2").is_ok());
/// assert!(sluice_model::validate_name("service", "echo/v2").is_err());
/// ```
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > NAME_MAX_LEN {
        return Err(NameError::TooLong {
            what,
            name: name.chars().take(NAME_MAX_LEN).collect::<String>() + "…",
            len: name.len(),
            max: NAME_MAX_LEN,
        });
    }
    if let Some((at, found)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadCharacter {
            what,
            name: name.to_owned(),
            found,
            at,
        });
    }
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge_ok(name.as_bytes().first()) || !edge_ok(name.as_bytes().last()) {
        return Err(NameError::BadEdge {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["a", "echo", "echo-v2", "user_service", "api.v1", "A1"] {
            assert_eq!(validate_name("service", name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_bad_names_with_a_message_naming_the_problem() {
        let err = validate_name("service", "").unwrap_err();
        assert_eq!(err.to_string(), "service must not be empty");
        let err = validate_name("namespace", "a/b").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
        let err = validate_name("service", "-echo").unwrap_err();
        assert!(err.to_string().contains("start and end"), "{err}");
        let long = "x".repeat(64);
        let err = validate_name("service", &long).unwrap_err();
        assert!(err.to_string().contains("64 bytes"), "{err}");
        assert!(validate_name("service", "é").is_err());
    }
}

/// Text that does not read as what it should be (a duration, a time, an address,
/// an API template): the text, and a message that names it and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The text given.
    pub input: String,
    /// What is wrong, naming the text.
    pub message: String,
}

impl ParseError {
    /// An error for `input`.
    pub fn new(input: &str, message: impl Into<String>) -> Self {
        ParseError {
            input: input.to_owned(),
            message: message.into(),
        }
    }
}

impl From<ParseError> for String {
    fn from(error: ParseError) -> Self {
        error.message
    }
}
