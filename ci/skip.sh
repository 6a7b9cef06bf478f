# Sourced by the ci scripts: how a part that cannot run here says so.
# skip_part NAME REASON: prints "SKIP NAME: REASON" and exits 0; with TONG_REQUIRE_ROOT=1
# (ci/test sets it when run as root) prints FAIL and exits 1 instead, as the Rust tests'
# kit (crates/tong-testkit) panics, so a CI run where anything skipped fails.
skip_part() {
  if [ "${TONG_REQUIRE_ROOT:-}" = 1 ]; then
    echo "FAIL $1: $2 (TONG_REQUIRE_ROOT=1 forbids skipping)"
    exit 1
  fi
  echo "SKIP $1: $2"
  exit 0
}
