/*
 * floor: the least a runtime can do to run the benchmark bundle, as one static C program.
 *
 * It does the kernel work that `ci/make-bundle DIR /bin/true` asks of any runtime (the
 * bundle benches/side-by-side measures) and nothing else: no config parsing (the bundle's
 * settings are written in below), no plugins, no state beyond a pid file and a FIFO, no
 * hooks, no checks, no error recovery. side-by-side runs it beside tong, crun and runc
 * (`--floor`), so its times are the floor under the same harness, on the same machine,
 * in the same interleaving: no runtime doing this work can be faster than it.
 *
 *   floor --root R run --bundle B ID      clone, cgroups, mounts, pivot_root, exec, wait
 *   floor --root R create --bundle B ID   the same, stopped before exec on R/ID/fifo
 *   floor --root R start ID               one byte into R/ID/fifo
 *   floor --root R delete -f ID           SIGKILL, wait until gone, remove cgroups, state
 *
 * The work, as the bundle asks it: pid, network, ipc, uts and mount namespaces; one cgroup
 * per mounted v1 hierarchy (and the cgroup2 mount, if any) with the memory and pids limits,
 * cpuset copied from the parent and the default device rules; the mounts of the bundle
 * (proc, /dev tmpfs, devpts, shm, mqueue, sysfs read-only), the six default device nodes
 * and /dev symlinks, 4 masked and 5 read-only paths; hostname; lo up; pivot_root and the
 * lazy unmount of the old root; every capability dropped, no_new_privs; exec /bin/true.
 *
 * Build: gcc -O2 -static -o floor benches/floor-runtime/floor.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CGROUP_SUPER_MAGIC 0x27e0eb
#define CGROUP2_SUPER_MAGIC 0x63677270
#define MAX_HIERARCHIES 16

static char hierarchies[MAX_HIERARCHIES][300];
static int n_hierarchies;

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) die(path);
  close(fd);
}

static void read_file(const char *path, char *buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  if (fd < 0 || (n = read(fd, buf, len - 1)) < 0) die(path);
  buf[n] = 0;
  close(fd);
}

/* The cgroup directory of container `id` in every mounted hierarchy. */
static void find_cgroups(const char *id) {
  DIR *d = opendir("/sys/fs/cgroup");
  struct dirent *e;
  struct statfs fs;
  if (!d) die("/sys/fs/cgroup");
  while ((e = readdir(d)) && n_hierarchies < MAX_HIERARCHIES) {
    char path[300];
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/sys/fs/cgroup/%s", e->d_name);
    if (statfs(path, &fs) < 0) continue;
    if (fs.f_type != CGROUP_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC) continue;
    snprintf(hierarchies[n_hierarchies++], sizeof *hierarchies, "%s/floor-%s", path, id);
  }
  closedir(d);
}

static void create_cgroups(void) {
  static const char *devices[] = {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                                  "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"};
  char path[400], value[256];
  for (int i = 0; i < n_hierarchies; i++) {
    const char *h = hierarchies[i];
    if (mkdir(h, 0755) < 0) die(h);
    if (strstr(h, "/memory/")) {
      snprintf(path, sizeof path, "%s/memory.limit_in_bytes", h);
      write_file(path, "134217728");
    } else if (strstr(h, "/pids/")) {
      snprintf(path, sizeof path, "%s/pids.max", h);
      write_file(path, "64");
    } else if (strstr(h, "/cpuset/")) {
      read_file("/sys/fs/cgroup/cpuset/cpuset.cpus", value, sizeof value);
      snprintf(path, sizeof path, "%s/cpuset.cpus", h);
      write_file(path, value);
      read_file("/sys/fs/cgroup/cpuset/cpuset.mems", value, sizeof value);
      snprintf(path, sizeof path, "%s/cpuset.mems", h);
      write_file(path, value);
    } else if (strstr(h, "/devices/")) {
      snprintf(path, sizeof path, "%s/devices.deny", h);
      write_file(path, "a");
      snprintf(path, sizeof path, "%s/devices.allow", h);
      for (size_t j = 0; j < sizeof devices / sizeof *devices; j++) write_file(path, devices[j]);
    }
  }
}

static void join_cgroups(pid_t pid) {
  char path[400], text[16];
  snprintf(text, sizeof text, "%d", pid);
  for (int i = 0; i < n_hierarchies; i++) {
    snprintf(path, sizeof path, "%s/cgroup.procs", hierarchies[i]);
    write_file(path, text);
  }
}

static void remove_cgroups(void) {
  for (int i = 0; i < n_hierarchies; i++) {
    /* The last task may still be leaving the cgroup right after it was reaped. */
    for (int tries = 0; rmdir(hierarchies[i]) < 0 && errno == EBUSY && tries < 1000; tries++) {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
    }
  }
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags,
                const char *data) {
  if (mount(src, dst, type, flags, data) < 0) die(dst);
}

/* Everything between clone and exec, in the child (pid 1 of the new pid namespace). */
static void child(const char *bundle, int go, int ready, const char *fifo) {
  static const char *nodes[][2] = {{"dev/null", "1:3"}, {"dev/zero", "1:5"}, {"dev/full", "1:7"},
                                   {"dev/random", "1:8"}, {"dev/urandom", "1:9"}, {"dev/tty", "5:0"}};
  static const char *links[][2] = {{"/proc/self/fd", "dev/fd"}, {"/proc/self/fd/0", "dev/stdin"},
                                   {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"},
                                   {"pts/ptmx", "dev/ptmx"}};
  static const char *masked_files[] = {"proc/kcore", "proc/keys", "proc/timer_list"};
  static const char *read_only[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"};
  char rootfs[4096], byte;
  int start_fd = -1;

  snprintf(rootfs, sizeof rootfs, "%s/rootfs", bundle);
  mnt(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  mnt(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
  if (chdir(rootfs) < 0) die("chdir rootfs");
  mnt("proc", "proc", "proc", 0, NULL);
  mnt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  mkdir("dev/pts", 0755);
  mnt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
  mkdir("dev/shm", 0755);
  mnt("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k");
  mkdir("dev/mqueue", 0755);
  mnt("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  mnt("sysfs", "sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL);
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    unsigned maj, min;
    sscanf(nodes[i][1], "%u:%u", &maj, &min);
    if (mknod(nodes[i][0], S_IFCHR | 0666, makedev(maj, min)) < 0) die(nodes[i][0]);
  }
  for (size_t i = 0; i < sizeof links / sizeof *links; i++)
    if (symlink(links[i][0], links[i][1]) < 0) die(links[i][1]);
  for (size_t i = 0; i < sizeof masked_files / sizeof *masked_files; i++)
    if (mount("dev/null", masked_files[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT) die(masked_files[i]);
  mnt("tmpfs", "sys/firmware", "tmpfs", MS_RDONLY, NULL);
  for (size_t i = 0; i < sizeof read_only / sizeof *read_only; i++) {
    if (mount(read_only[i], read_only[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      die(read_only[i]);
    }
    mnt(NULL, read_only[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
  }
  if (sethostname("tong-demo", 9) < 0) die("sethostname");
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {.ifr_name = "lo", .ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING};
  if (sock < 0 || ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) die("lo up");
  close(sock);
  if (fifo && (start_fd = open(fifo, O_RDWR | O_CLOEXEC)) < 0) die(fifo);
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
  if (umount2(".", MNT_DETACH) < 0) die("umount old root");
  if (chdir("/") < 0) die("chdir /");

  /* The parent has moved us into the cgroups; with `create`, it returns once we are set
     up, and `start` says go. */
  if (read(go, &byte, 1) != 1) _exit(125);
  if (write(ready, "r", 1) != 1) _exit(125);
  close(ready);
  if (start_fd >= 0 && read(start_fd, &byte, 1) != 1) _exit(125);

  for (int cap = 0; cap <= CAP_LAST_CAP; cap++) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {{0}};
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
  char *argv[] = {"/bin/true", NULL}, *envp[] = {"PATH=/bin", "TERM=xterm", NULL};
  execve(argv[0], argv, envp);
  die("execve");
}

static int launch(const char *root, const char *bundle, const char *id, int detach) {
  char dir[4096], fifo[4200], pidfile[4200];
  int go[2], ready[2];
  find_cgroups(id);
  create_cgroups();
  if (detach) {
    snprintf(dir, sizeof dir, "%s/%s", root, id);
    mkdir(root, 0700);
    if (mkdir(dir, 0700) < 0) die(dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    if (mkfifo(fifo, 0600) < 0) die(fifo);
  }
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) die("pipe");
  pid_t pid = syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                                     CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid < 0) die("clone");
  if (pid == 0) {
    close(go[1]);
    close(ready[0]);
    child(bundle, go[0], ready[1], detach ? fifo : NULL);
  }
  close(go[0]);
  close(ready[1]);
  join_cgroups(pid);
  signal(SIGPIPE, SIG_IGN);
  if (write(go[1], "g", 1) != 1) { /* the child failed and said why */
    waitpid(pid, NULL, 0);
    remove_cgroups();
    return 125;
  }
  close(go[1]);
  char byte;
  if (read(ready[0], &byte, 1) != 1) { /* the child failed and said why */
    waitpid(pid, NULL, 0);
    remove_cgroups();
    return 125;
  }
  close(ready[0]);
  if (detach) {
    char text[16];
    snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
    int fd = open(pidfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    snprintf(text, sizeof text, "%d", pid);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) die(pidfile);
    close(fd);
    return 0;
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) die("waitpid");
  remove_cgroups();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int start(const char *root, const char *id) {
  char fifo[4200];
  snprintf(fifo, sizeof fifo, "%s/%s/fifo", root, id);
  int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 || write(fd, "s", 1) != 1) die(fifo);
  close(fd);
  return 0;
}

static int delete(const char *root, const char *id) {
  char path[4200], text[16];
  snprintf(path, sizeof path, "%s/%s/pid", root, id);
  read_file(path, text, sizeof text);
  pid_t pid = atoi(text);
  int pidfd = syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    kill(pid, SIGKILL);
    poll(&p, 1, -1);
    close(pidfd);
  }
  find_cgroups(id);
  remove_cgroups();
  unlink(path);
  snprintf(path, sizeof path, "%s/%s/fifo", root, id);
  unlink(path);
  snprintf(path, sizeof path, "%s/%s", root, id);
  if (rmdir(path) < 0) die(path);
  return 0;
}

int main(int argc, char **argv) {
  const char *root = "/run/floor", *bundle = ".";
  int i = 1;
  if (i + 1 < argc && !strcmp(argv[i], "--root")) root = argv[i + 1], i += 2;
  if (i >= argc) goto usage;
  const char *cmd = argv[i++];
  if (i + 1 < argc && !strcmp(argv[i], "--bundle")) bundle = argv[i + 1], i += 2;
  if (i < argc && !strcmp(argv[i], "-f")) i++;
  if (i != argc - 1) goto usage;
  const char *id = argv[i];
  if (!strcmp(cmd, "run")) return launch(root, bundle, id, 0);
  if (!strcmp(cmd, "create")) return launch(root, bundle, id, 1);
  if (!strcmp(cmd, "start")) return start(root, id);
  if (!strcmp(cmd, "delete")) return delete(root, id);
usage:
  fprintf(stderr, "usage: floor [--root R] run|create [--bundle B] ID | start ID | delete -f ID\n");
  return 2;
}
