# Sourced by benches/side-by-side and benches/profile-steps.
#
# start_private_ns: starts a sleeping process ($holder) in a new private mount namespace
# where /sys/fs/cgroup/unified is unmounted (crun 1.8.1 refuses the hybrid cgroup layout:
# "cgroups in hybrid mode not supported"), and sets $private_ns to that namespace and
# $host_ns to the caller's. The host's mounts are never changed. The caller kills $holder.
start_private_ns() {
  host_ns=/proc/$$/ns/mnt
  unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec sleep infinity' &
  holder=$!
  local _
  for _ in $(seq 100); do
    if ! grep -q ' /sys/fs/cgroup/unified ' "/proc/$holder/mountinfo" 2>/dev/null &&
      [ "$(readlink "/proc/$holder/ns/mnt")" != "$(readlink "$host_ns")" ]; then
      break
    fi
    sleep 0.01
  done
  if grep -q ' /sys/fs/cgroup/unified ' "/proc/$holder/mountinfo"; then
    echo "could not unmount /sys/fs/cgroup/unified in the private mount namespace" >&2
    return 1
  fi
  private_ns=/proc/$holder/ns/mnt
}

# stop_private_ns PREFIX: removes what crun left in the namespace and stops $holder.
# crun also makes its cgroup where the cgroup2 mount was: plain directories on the
# /sys/fs/cgroup tmpfs, which the host cannot see (its cgroup2 mount covers them) and
# crun's delete does not remove. Only the entries named PREFIX* are removed.
stop_private_ns() {
  local prefix=$1
  [ -n "${holder:-}" ] || return 0
  nsenter --mount="$private_ns" sh -c \
    'grep -q " /sys/fs/cgroup/unified " /proc/self/mountinfo || rm -rf -- /sys/fs/cgroup/unified/"$1"*' \
    sh "$prefix"
  kill "$holder" 2>/dev/null
  wait "$holder" 2>/dev/null
  holder=
}
