//! Diffs between two versions' contents, in the unified format `diff -u` and
//! `git diff` print.

use similar::TextDiff;

/// A unified diff from `old` to `new`, labelled with the two names; empty when
/// the two are equal.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_shows_as_removed_and_added() {
        let diff = unified_diff("pool: 10\nhost: a\n", "pool: 20\nhost: a\n", "v1", "v2");
        assert!(diff.starts_with("--- v1\n+++ v2\n"), "{diff}");
        assert!(diff.contains("-pool: 10\n+pool: 20\n"), "{diff}");
        assert!(diff.contains(" host: a\n"), "{diff}");
        assert_eq!(unified_diff("same\n", "same\n", "a", "b"), "");
    }
}
