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
use std::io::Write;
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
    skip_to(&mut std::io::stdout(), skips_fail(), test, reason)
}

/// [`skip`], writing to `out`; `required`: whether skips fail.
fn skip_to(out: &mut dyn Write, required: bool, test: &str, reason: impl Display) -> bool {
    assert!(
        !required,
        "{test} cannot run: {reason} ({REQUIRE_VAR}=1 forbids skipping)"
    );
    let _ = writeln!(out, "SKIP {test}: {reason}");
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
    let found = first_existing(paths);
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

fn first_existing(paths: &[&'static str]) -> Option<&'static Path> {
    paths.iter().copied().map(Path::new).find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written to a buffer: a SKIP line on stdout would count as a skip of the run.
    #[test]
    fn a_skip_says_why_or_fails_when_required() {
        let mut out = Vec::new();
        assert!(!skip_to(&mut out, false, "t", "no runc"));
        assert_eq!(String::from_utf8(out).unwrap(), "SKIP t: no runc\n");
        let mut out = Vec::new();
        let failed = std::panic::catch_unwind(move || skip_to(&mut out, true, "t", "no runc"));
        let message = failed.expect_err("a required run must not skip");
        let text = message.downcast_ref::<String>().unwrap();
        assert!(
            text.contains("t cannot run: no runc (TONG_REQUIRE_ROOT=1"),
            "{text}"
        );
        // Nothing to skip: no output, whatever the variable says.
        assert!(require("t", true, "unused"));
    }

    #[test]
    fn the_first_existing_tool_is_found() {
        assert_eq!(first_existing(&["/nonexistent/tool"]), None);
        assert_eq!(
            first_existing(&["/nonexistent/tool", "/"]),
            Some(Path::new("/"))
        );
    }
}
