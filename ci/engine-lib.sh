# Shared by ci/test-podman and ci/test-containerd (sourced, from the repository root):
# packages, the tong build, checks, the scenario runner and the summary.

# Installs the Debian packages that are missing (no recommends).
engine_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "== installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null ||
    { echo "$0: cannot install ${missing[*]}" >&2; return 1; }
}

# Builds tong and every plugin crate under plugins/ (found beside the binary) and sets
# TONG, unless TONG names a runtime already.
engine_build_tong() {
  [ -z "${TONG:-}" ] || return 0
  echo "== building tong and its plugins"
  cargo build -q -p tong-cli $(sed -n 's/^name = "\(tong-plugin-[^"]*\)"/-p \1/p' plugins/*/Cargo.toml) ||
    return 1
  TONG=${CARGO_TARGET_DIR:-$PWD/target}/debug/tong
}

fail() { echo "FAILED: $*"; return 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
expect_in() { grep -q -- "$2" <<<"$1" || fail "$3: expected '$2' in: $1"; }

# Runs each scenario named in $scenarios (function s_NAME, dashes as underscores) with
# its output in LOGDIR/NAME; a failing one does not stop the others. Calls
# after_failure NAME and after_scenario when the script defines them.
engine_run_scenarios() {
  local logdir=$1 s fn start
  mkdir -p "$logdir"
  passed=0 failed=0 failures=()
  for s in "${scenarios[@]}"; do
    fn=s_${s//-/_}
    if ! declare -F "$fn" >/dev/null; then
      echo "unknown scenario $s (known: ${all_scenarios[*]})"; failed=$((failed + 1)); continue
    fi
    start=$SECONDS
    if "$fn" >"$logdir/$s" 2>&1; then
      echo "ok      $s ($((SECONDS - start)) s)"; passed=$((passed + 1))
    else
      echo "FAILED  $s ($((SECONDS - start)) s)"; failed=$((failed + 1)); failures+=("$s")
      sed 's/^/        | /' "$logdir/$s" | tail -15
      ! declare -F after_failure >/dev/null || after_failure "$s"
    fi
    ! declare -F after_scenario >/dev/null || after_scenario
  done
  left=0
}

leak() { echo "LEFTOVER: $*"; left=1; }

# The summary line; fails when a scenario failed or something was left behind.
engine_summary() {
  echo "$passed passed, $failed failed"
  [ ${#failures[@]} -eq 0 ] || echo "failed scenarios: ${failures[*]}"
  [ "$failed" -eq 0 ] && [ "$left" -eq 0 ]
}

# Removes the iptables chains netavark leaves (NETAVARK*) and the rules jumping to them,
# in the nat and filter tables, for IPv4 and IPv6.
remove_netavark_chains() {
  local cmd t rule c
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for t in nat filter; do
      "$cmd" -t "$t" -S 2>/dev/null | grep -E '^-A [^ ]+ .*-j NETAVARK' | grep -v '^-A NETAVARK' |
        sed 's/^-A/-D/' | while read -r rule; do eval "\"\$cmd\" -t \"\$t\" $rule"; done
      for c in $("$cmd" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^NETAVARK/ {print $2}'); do
        "$cmd" -t "$t" -F "$c"
      done
      for c in $("$cmd" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^NETAVARK/ {print $2}'); do
        "$cmd" -t "$t" -X "$c"
      done
    done
  done
}

# Whether netavark's chains exist now.
have_netavark_chains() {
  { iptables-save; ip6tables-save; } 2>/dev/null | grep -q '^:NETAVARK'
}
