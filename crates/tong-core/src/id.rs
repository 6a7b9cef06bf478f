//! Container ids: the one piece of input that becomes a directory name under the state
//! root, so it is checked strictly.

use crate::error::{Error, Result};

/// Longest accepted id, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Accepts ids made of printable characters other than `/`, not `.` or `..`, not empty
/// and at most [`MAX_ID_LEN`] bytes; the error says which rule failed.
pub fn validate(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("it is longer than 1024 bytes")
    } else if id == "." || id == ".." {
        Some("it is a relative path component")
    } else if id.contains('/') {
        Some("it contains '/'")
    } else if id.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if id.starts_with('-') {
        Some("it starts with '-'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(why) => {
            let shown: String = id.chars().take(64).collect();
            Err(Error::invalid(format!(
                "invalid container id {shown:?}: {why}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_ids() {
        for id in ["a", "web-1", "0f3c9a_b.c", "x".repeat(1024).as_str()] {
            validate(id).unwrap();
        }
    }

    #[test]
    fn refuses_bad_ids_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("/", "'/'"),
            ("a/b", "'/'"),
            ("..", "relative"),
            (".", "relative"),
            ("a\nb", "control"),
            ("-x", "'-'"),
        ];
        for (id, why) in cases {
            let err = validate(id).unwrap_err().to_string();
            assert!(err.contains(why), "{id:?}: {err}");
        }
        assert!(validate(&"x".repeat(1025))
            .unwrap_err()
            .to_string()
            .contains("1024"));
    }
}
