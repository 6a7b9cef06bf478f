//! Init mode for system containers (`--init`, annotation `tong.init=true`, the C
//! option): the container's first process forks right before exec and stays as its
//! pid 1 ([`crate::child::init`]). This module decides whether it is asked for.

/// The annotation that turns init mode on.
pub const INIT_ANNOTATION: &str = "tong.init";

/// Whether the annotations ask for init mode.
pub fn requested_by(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    annotations
        .get(INIT_ANNOTATION)
        .is_some_and(|v| v == "true" || v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation() {
        let mut a = std::collections::BTreeMap::new();
        assert!(!requested_by(&a));
        a.insert(INIT_ANNOTATION.to_string(), "true".to_string());
        assert!(requested_by(&a));
        a.insert(INIT_ANNOTATION.to_string(), "false".to_string());
        assert!(!requested_by(&a));
    }
}
