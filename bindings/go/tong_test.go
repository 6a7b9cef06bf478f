package tong

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run real containers: they need root and a busybox rootfs, taken from
// $TONG_TEST_ROOTFS or made with ../../ci/make-bundle. Every test uses a private
// state root and unique ids, and removes what it makes.

var rootfs string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// As the Rust tests' kit: under TONG_REQUIRE_ROOT=1 (ci/test as root) a skip fails.
		if os.Getenv("TONG_REQUIRE_ROOT") == "1" {
			fmt.Println("FAIL: the tong Go tests need root (TONG_REQUIRE_ROOT=1 forbids skipping)")
			os.Exit(1)
		}
		fmt.Println("SKIP: the tong Go tests run containers and need root")
		os.Exit(0)
	}
	rootfs = os.Getenv("TONG_TEST_ROOTFS")
	var made string
	if rootfs == "" {
		dir, err := os.MkdirTemp("", "tong-go-bundle-")
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		made = dir
		out, err := exec.Command("../../ci/make-bundle", dir).CombinedOutput()
		if err != nil {
			fmt.Printf("make-bundle: %v: %s\n", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		rootfs = filepath.Join(dir, "rootfs")
	}
	code := m.Run()
	if made != "" {
		os.RemoveAll(made)
	}
	os.Exit(code)
}

// bundle writes a config.json running args on the shared rootfs.
func bundle(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	config := fmt.Sprintf(`{"ociVersion": "1.0.2",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
   "args": [%s], "env": ["PATH=/bin"], "cwd": "/"},
 "root": {"path": %q},
 "hostname": "go-test",
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}}`,
		strings.Join(quoted, ", "), rootfs)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	rt, err := NewRuntime(RuntimeOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, root
}

// startedSleeper creates and starts a container that sleeps; it is deleted (forced) and
// closed when the test ends.
func startedSleeper(t *testing.T, rt *Runtime, id string) *Container {
	t.Helper()
	c, err := rt.Create(id, bundle(t, "sleep", "1000"), &CreateOptions{Stdout: devNull(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Delete(true)
		c.Close()
	})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func uniqueID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano())
}

func TestVersions(t *testing.T) {
	if Version() != HeaderVersion {
		t.Errorf("library %s, header %s", Version(), HeaderVersion)
	}
	if ABIVersion() != 1 {
		t.Errorf("ABI %d", ABIVersion())
	}
	if !HasAPIExtension("lifecycle") || HasAPIExtension("no-such") {
		t.Error("api extensions")
	}
	f, err := Features()
	if err != nil || !strings.Contains(string(f), "ociVersionMax") {
		t.Errorf("features: %v %s", err, f)
	}
}

func TestLifecycle(t *testing.T) {
	rt, _ := newRuntime(t)
	stdinR, stdinW, _ := os.Pipe()
	stdoutR, stdoutW, _ := os.Pipe()
	defer stdinW.Close()
	defer stdoutR.Close()
	id := uniqueID("go-life")
	c, err := rt.Create(id, bundle(t, "sh", "-c", "echo ready; read x; echo got $x; exit 5"),
		&CreateOptions{Stdin: stdinR, Stdout: stdoutW})
	stdinR.Close()
	stdoutW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer c.Delete(true)

	if s, err := c.State(); err != nil || s.Status != "created" || s.ID != id || s.Pid <= 0 {
		t.Fatalf("state after create: %+v %v", s, err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdoutR)
	if line, _ := out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("container said %q", line)
	}
	if s, err := c.State(); err != nil || s.Status != "running" {
		t.Fatalf("state after start: %+v %v", s, err)
	}
	if pids, err := c.Ps(); err != nil || len(pids) == 0 {
		t.Errorf("ps: %v %v", pids, err)
	}
	if st, err := c.Stats(); err != nil || !strings.HasPrefix(string(st), "{") {
		t.Errorf("stats: %s %v", st, err)
	}
	if err := c.Pause(); err != nil {
		t.Errorf("pause: %v", err)
	} else {
		if s, _ := c.State(); s == nil || s.Status != "paused" {
			t.Errorf("state after pause: %+v", s)
		}
		if err := c.Resume(); err != nil {
			t.Errorf("resume: %v", err)
		}
	}
	list, err := rt.List()
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("list: %+v %v", list, err)
	}
	fmt.Fprintln(stdinW, "bye")
	code, err := c.Wait()
	if err != nil || code != 5 {
		t.Fatalf("wait: %d %v", code, err)
	}
	if line, _ := out.ReadString('\n'); line != "got bye\n" {
		t.Errorf("container said %q", line)
	}
	if s, err := c.State(); err != nil || s.Status != "stopped" {
		t.Errorf("state after exit: %+v %v", s, err)
	}
	if err := c.Delete(false); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Open(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("open after delete: %v", err)
	}
}

func TestRunAndKill(t *testing.T) {
	rt, _ := newRuntime(t)
	null := devNull(t)
	code, err := rt.Run(uniqueID("go-run"), bundle(t, "sh", "-c", "exit 9"), &CreateOptions{Stdout: null})
	if err != nil || code != 9 {
		t.Errorf("run: %d %v", code, err)
	}
	c := startedSleeper(t, rt, uniqueID("go-kill"))
	if err := c.Delete(false); !errors.Is(err, ErrInvalidState) {
		t.Errorf("delete of a running container: %v", err)
	}
	if err := c.Kill(syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if code, err := c.Wait(); err != nil || code != 128+9 {
		t.Errorf("wait after SIGKILL: %d %v", code, err)
	}
	if err := c.Delete(false); err != nil {
		t.Error(err)
	}
}

func TestErrors(t *testing.T) {
	rt, _ := newRuntime(t)
	var te *Error
	_, err := rt.Open("no-such-container")
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &te) || te.Code != CodeNotFound || te.Message == "" {
		t.Errorf("open unknown: %#v", err)
	}
	if _, err := rt.Create("../bad", bundle(t, "true"), nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad id: %v", err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"ociVersion": `), 0o600)
	if _, err := rt.Create(uniqueID("go-badjson"), bad, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("invalid config JSON: %v", err)
	}
	b := bundle(t, "true")
	if _, err := rt.Create(uniqueID("go-nobackend"), b, &CreateOptions{Backends: map[string]string{"cgroup": "nope"}}); !errors.Is(err, ErrPlugin) {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := rt.Create(uniqueID("go-nokind"), b, &CreateOptions{Backends: map[string]string{"gpu": "x"}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown kind: %v", err)
	}
	id := uniqueID("go-dup")
	c, err := rt.Create(id, b, &CreateOptions{Stdout: devNull(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Create(id, b, nil); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("duplicate id: %v", err)
	}
	if err := c.Pause(); !errors.Is(err, ErrInvalidState) {
		t.Errorf("pause of a created container: %v", err)
	}
	if err := c.Delete(true); err != nil {
		t.Error(err)
	}
	c.Close()
	if err := c.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("closed handle: %v", err)
	}
	closed, _ := NewRuntime(RuntimeOptions{Root: t.TempDir()})
	closed.Close()
	if _, err := closed.Open("x"); err != ErrClosed {
		t.Errorf("closed runtime: %v", err)
	}
}

// Two containers in one process, one per cgroup backend (no linux.resources: v2 on a
// hybrid host has no controllers to set).
func TestBackendPerContainer(t *testing.T) {
	rt, _ := newRuntime(t)
	null := devNull(t)
	b := bundle(t, "sleep", "1000")
	var cs []*Container
	for _, name := range []string{"v1", "v2"} {
		c, err := rt.Create(uniqueID("go-cg"+name), b, &CreateOptions{Stdout: null, Backends: map[string]string{"cgroup": name}})
		if err != nil {
			t.Fatalf("cgroup=%s: %v", name, err)
		}
		defer c.Close()
		defer c.Delete(true)
		cs = append(cs, c)
	}
	for i, name := range []string{"v1", "v2"} {
		s, err := cs[i].State()
		if err != nil || s.Backends["cgroup"] != name {
			t.Errorf("container %d: backends %v (%v), want cgroup=%s", i, s.Backends, err, name)
		}
		if err := cs[i].Start(); err != nil {
			t.Error(err)
		}
	}
	for _, c := range cs {
		if err := c.Kill(syscall.SIGKILL, false); err != nil {
			t.Error(err)
		}
		if code, err := c.Wait(); err != nil || code != 137 {
			t.Errorf("wait: %d %v", code, err)
		}
		if err := c.Delete(false); err != nil {
			t.Error(err)
		}
	}
}

// At least 8 goroutines create, start, wait for and delete 56 containers at once; then
// nothing of them may remain on the host.
func TestConcurrentLifecycles(t *testing.T) {
	const workers, perWorker = 8, 7
	rt, root := newRuntime(t)
	null := devNull(t)
	b := bundle(t, "sh", "-c", "exit 3")
	prefix := fmt.Sprintf("go-conc-%d", os.Getpid())

	var mu sync.Mutex
	var pids []int
	var ids []string
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				id := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				if err := lifecycle(rt, id, b, null, &mu, &pids); err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		t.Fatal("deadlock: the goroutines did not finish within 5 minutes")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d containers by %d goroutines in %v", len(ids), workers, time.Since(start))
	if len(ids) != workers*perWorker {
		t.Errorf("%d lifecycles ran", len(ids))
	}

	// The host: no state directory, no cgroup, no process left.
	// The last delete leaves the root empty, as runc does.
	if entries, err := os.ReadDir(root); err == nil {
		for _, e := range entries {
			t.Errorf("state root not empty: %s", e.Name())
		}
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + prefix + "*")
	more, _ := filepath.Glob("/sys/fs/cgroup/" + prefix + "*")
	if left := append(cgroups, more...); len(left) != 0 {
		t.Errorf("cgroups left: %v", left)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); len(stat) > 0 {
				t.Errorf("process %d still exists: %s", pid, stat)
			}
		}
	}
	if list, err := rt.List(); err != nil || len(list) != 0 {
		t.Errorf("list after: %d %v", len(list), err)
	}
}

func lifecycle(rt *Runtime, id, bundle string, null *os.File, mu *sync.Mutex, pids *[]int) error {
	c, err := rt.Create(id, bundle, &CreateOptions{Stdin: null, Stdout: null, Stderr: null})
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.State()
	if err != nil {
		c.Delete(true)
		return err
	}
	mu.Lock()
	*pids = append(*pids, s.Pid)
	mu.Unlock()
	if err := c.Start(); err != nil {
		c.Delete(true)
		return err
	}
	code, err := c.Wait()
	if err != nil {
		c.Delete(true)
		return err
	}
	if code != 3 {
		c.Delete(true)
		return fmt.Errorf("exit code %d, want 3", code)
	}
	return c.Delete(false)
}

// Exec joins the running container (its hostname, its pid namespace, its stdio from
// us); Update changes a live limit, read back on the host and felt inside.
func TestExecAndUpdate(t *testing.T) {
	rt, _ := newRuntime(t)
	null := devNull(t)
	id := uniqueID("go-exec")
	c := startedSleeper(t, rt, id)
	outR, outW, _ := os.Pipe()
	code, err := c.Exec(&Process{Args: []string{"sh", "-c", "echo $(hostname) $(cat /proc/1/comm); exit 4"}, Env: []string{"PATH=/bin"}},
		&ExecOptions{Stdout: outW})
	outW.Close()
	if err != nil || code != 4 {
		t.Fatalf("exec: %d %v", code, err)
	}
	line, _ := bufio.NewReader(outR).ReadString('\n')
	outR.Close()
	if line != "go-test sleep\n" {
		t.Errorf("exec'd process saw %q", line)
	}
	if _, err := c.Exec(&Process{Args: []string{"no-such-program"}}, nil); !errors.Is(err, ErrContainer) {
		t.Errorf("exec of a missing program: %v", err)
	}
	if code, err := c.Exec(&Process{Args: []string{"sleep", "100"}}, &ExecOptions{Detach: true}); err != nil || code != 0 {
		t.Errorf("detached exec: %d %v", code, err)
	}
	if pids, err := c.Ps(); err != nil || len(pids) != 2 {
		t.Errorf("ps after a detached exec: %v %v", pids, err)
	}
	if err := c.Update([]byte(`{"pids": {"limit": 3}}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/pids/" + id + "/pids.max"); err == nil && string(b) != "3\n" {
		t.Errorf("pids.max after update: %q", b)
	}
	// Init, the detached sleep and the shell fill the limit of 3: a fork fails.
	if code, err := c.Exec(&Process{Args: []string{"sh", "-c", "sleep 1 & wait"}, Env: []string{"PATH=/bin"}},
		&ExecOptions{Stderr: null}); err != nil || code == 0 {
		t.Errorf("fork under a pids limit of 3: %d %v", code, err)
	}
	if err := c.Update([]byte(`[]`)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("update with an array: %v", err)
	}
	if err := c.Delete(true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(&Process{Args: []string{"true"}}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("exec after delete: %v", err)
	}
}

// Init mode: tong's init is pid 1, forwards SIGTERM to the program and exits with its
// status.
func TestInitMode(t *testing.T) {
	rt, _ := newRuntime(t)
	null := devNull(t)
	c, err := rt.Create(uniqueID("go-init"), bundle(t, "sh", "-c", "(sleep 0.1 &); sleep 1000"), &CreateOptions{Stdout: null, Init: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer c.Delete(true)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	outR, outW, _ := os.Pipe()
	code, err := c.Exec(&Process{Args: []string{"cat", "/proc/1/comm"}, Env: []string{"PATH=/bin"}}, &ExecOptions{Stdout: outW})
	outW.Close()
	line, _ := bufio.NewReader(outR).ReadString('\n')
	outR.Close()
	if err != nil || code != 0 || line != "tong-init\n" {
		t.Errorf("pid 1 inside: %q (%d %v)", line, code, err)
	}
	if err := c.Kill(syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if code, err := c.Wait(); err != nil || code != 128+int(syscall.SIGTERM) {
		t.Errorf("wait after SIGTERM: %d %v", code, err)
	}
}

// ExtraFiles: a file and a pipe become the container's 3 and 4, as with
// exec.Cmd.ExtraFiles; nothing else of this process (the Go runtime's epoll descriptor,
// an inheritable descriptor opened without O_CLOEXEC) is visible inside. Exec takes
// them too.
func TestExtraFiles(t *testing.T) {
	rt, _ := newRuntime(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "passed-file")
	if err := os.WriteFile(path, []byte("data from the file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	leaky, err := syscall.Open(filepath.Join(dir, "not-passed"), syscall.O_CREAT|syscall.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leaky)
	outR, outW, _ := os.Pipe()
	code, err := rt.Run(uniqueID("go-fds"),
		bundle(t, "sh", "-c", "cat <&3 >&4; echo fds: $(ls /proc/self/fd) >&4; ls -l /proc/self/fd/ >&4 2>/dev/null"),
		&CreateOptions{ExtraFiles: []*os.File{file, outW}})
	outW.Close()
	out, _ := io.ReadAll(outR)
	outR.Close()
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v: %s", code, err, out)
	}
	text := string(out)
	if !strings.HasPrefix(text, "data from the file\n") || !strings.Contains(text, "fds: 0 1 2 3 4 5\n") {
		t.Errorf("the container read fd 3 and has 0-4 (5 is ls's own): %q", text)
	}
	if !strings.Contains(text, "passed-file") || strings.Contains(text, "not-passed") {
		t.Errorf("descriptors inside: %q", text)
	}
	if _, err := rt.Run(uniqueID("go-fds-nil"), bundle(t, "true"), &CreateOptions{ExtraFiles: []*os.File{nil}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a nil ExtraFiles entry: %v", err)
	}

	c := startedSleeper(t, rt, uniqueID("go-fds-exec"))
	outR, outW, _ = os.Pipe()
	code, err = c.Exec(&Process{Args: []string{"sh", "-c", "echo on fd 3 >&3"}, Env: []string{"PATH=/bin"}},
		&ExecOptions{ExtraFiles: []*os.File{outW}})
	outW.Close()
	out, _ = io.ReadAll(outR)
	outR.Close()
	if err != nil || code != 0 || string(out) != "on fd 3\n" {
		t.Errorf("exec with ExtraFiles: %d %v %q", code, err, out)
	}
}

// TestLogWarnings: the engine's warnings reach the Go log function, not stderr. A
// poststart hook that fails only warns.
func TestLogWarnings(t *testing.T) {
	dir := t.TempDir()
	config := fmt.Sprintf(`{"ociVersion": "1.0.2",
 "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "exit 0"], "env": ["PATH=/bin"], "cwd": "/"},
 "root": {"path": %q},
 "hooks": {"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 9"]}]},
 "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}`, rootfs)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var warnings []string
	rt, err := NewRuntime(RuntimeOptions{
		Root: filepath.Join(t.TempDir(), "state"),
		Log: func(level LogLevel, message string) {
			mu.Lock()
			defer mu.Unlock()
			if level == LogWarn {
				warnings = append(warnings, message)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	code, err := rt.Run(uniqueID("go-warn"), dir, nil)
	if err != nil || code != 0 {
		t.Fatalf("run: code %d, %v", code, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(warnings) == 0 || !strings.Contains(strings.Join(warnings, "\n"), "poststart") {
		t.Fatalf("no poststart warning in the log: %q", warnings)
	}
}
