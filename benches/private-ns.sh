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
