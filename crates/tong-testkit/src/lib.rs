//! How tong's tests (and benches) skip. A test that cannot run here says so with one
//! `SKIP <test>: <reason>` line and returns; where the run must be complete
//! (`TONG_REQUIRE_ROOT=1`, which `ci/test` sets when it runs as root) the same skip
//! panics instead, so a run where anything skipped fails.
//!
//! One variable covers both root and tools: every tool a test looks for (runc, nft, the
//! CNI plugins, util-linux, tini, busybox) is installed by `ci/deps`, so on a CI machine a
//! missing one is a defect of the machine, not a reason to pass.
//!
//! ```no_run
//! # fn demo() {
//! if !tong_testkit::require_root("my_test", "creates namespaces") {
//!     return;
//! }
//! let Some(runc) = tong_testkit::require_tool("my_test", &["/usr/sbin/runc"], "runc") else {
//!     return;
//! };
//! # let _ = runc;
//! # }
//! ```

use std::fmt::Display;
use std::path::Path;

/// The variable that turns every skip into a failure.
pub const REQUIRE_VAR: &str = "TONG_REQUIRE_ROOT";

/// Whether this run must not skip anything (`TONG_REQUIRE_ROOT=1`).
pub fn skips_fail() -> bool {
    std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1")
}

/// Skips `test`: prints `SKIP <test>: <reason>` and returns false, or panics with the
/// same text when skips fail ([`skips_fail`]). Meant as `if !cond { return skip(..) }`.
pub fn skip(test: &str, reason: impl Display) -> bool {
    assert!(
        !skips_fail(),
        "{test} cannot run: {reason} ({REQUIRE_VAR}=1 forbids skipping)"
    );
    println!("SKIP {test}: {reason}");
    false
}

/// True when `ok`; otherwise [`skip`]s `test` with `reason`.
pub fn require(test: &str, ok: bool, reason: impl Display) -> bool {
    ok || skip(test, reason)
}

/// True when running as root; otherwise [`skip`]s `test`, saying what it needs root for.
pub fn require_root(test: &str, needs: &str) -> bool {
    require(test, is_root(), format_args!("needs root ({needs})"))
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The first of `paths` that exists; otherwise [`skip`]s `test` naming the Debian
/// `package` to install.
pub fn require_tool(test: &str, paths: &[&'static str], package: &str) -> Option<&'static Path> {
    let found = paths.iter().copied().map(Path::new).find(|p| p.exists());
    if found.is_none() {
        skip(
            test,
            format_args!(
                "{} is missing (apt-get install {package}; ci/deps installs it)",
                paths.first().copied().unwrap_or("a tool")
            ),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variable is read on every call, so one process can check both behaviours;
    /// the two cases run in one test because tests share the environment.
    #[test]
    fn a_skip_prints_or_fails_as_the_variable_says() {
        let saved = std::env::var_os(REQUIRE_VAR);
        std::env::remove_var(REQUIRE_VAR);
        assert!(!skip("t", "reason"));
        assert!(require("t", true, "unused"));
        assert!(require_tool("t", &["/nonexistent/tool"], "pkg").is_none());
        assert_eq!(
            require_tool("t", &["/nonexistent/tool", "/"], "pkg"),
            Some(Path::new("/"))
        );
        std::env::set_var(REQUIRE_VAR, "1");
        let failed = std::panic::catch_unwind(|| skip("t", "no runc"));
        let message = failed.expect_err("a required run must not skip");
        let text = message.downcast_ref::<String>().unwrap();
        assert!(text.contains("t cannot run: no runc"), "{text}");
        assert!(std::panic::catch_unwind(|| require_tool("t", &["/nonexistent"], "p")).is_err());
        // Nothing to skip: passes whatever the variable says.
        assert!(require("t", true, "unused"));
        match saved {
            Some(v) => std::env::set_var(REQUIRE_VAR, v),
            None => std::env::remove_var(REQUIRE_VAR),
        }
    }
}
