// Package tong runs OCI containers through libtong, the C library of the tong
// container runtime (include/tong.h; docs/c-api.md).
//
// Build against an installed libtong (ci/install), found through pkg-config:
//
//	PKG_CONFIG_PATH=/usr/local/lib/pkgconfig go build
//
// A Runtime (a state root and a plugin search path) makes and opens Containers. Both
// are safe for concurrent use; Close releases them (Close waits for calls in progress
// on the same handle). Errors are *Error values carrying the library's code: test them
// with errors.Is(err, tong.ErrNotFound) and friends.
package tong

/*
#cgo pkg-config: tong
#include <stdint.h>
#include <stdlib.h>
#include <tong.h>

static tong_create_options tong_go_create_options(void) {
	tong_create_options o = TONG_CREATE_OPTIONS_INIT;
	return o;
}

static tong_exec_options tong_go_exec_options(void) {
	tong_exec_options o = TONG_EXEC_OPTIONS_INIT;
	return o;
}

// The log callback, defined in log.go (cgo's prototype of an exported function has a
// non-const char *).
extern void tongGoLog(void *data, int level, char *message);

// A cgo.Handle as the log callback's user data (a number, never dereferenced).
static void *tong_go_handle(uintptr_t h) {
	return (void *)h;
}

static tong_runtime_options tong_go_runtime_options(void) {
	tong_runtime_options o = TONG_RUNTIME_OPTIONS_INIT;
	return o;
}
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/cgo"
	"sync"
	"syscall"
	"unsafe"
)

// Version is the version of the libtong in use, such as "0.1.0".
func Version() string { return C.GoString(C.tong_version()) }

// ABIVersion is the major version of libtong's C ABI (1 for libtong.so.1).
func ABIVersion() uint32 { return uint32(C.tong_abi_version()) }

// HeaderVersion is the version of the tong.h this package was compiled with.
const HeaderVersion = C.TONG_VERSION_STRING

// HasAPIExtension reports whether libtong implements the named API extension
// (docs/c-api.md lists them).
func HasAPIExtension(name string) bool {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.tong_has_api_extension(cname) == 1
}

// Features returns what libtong implements, as the OCI runtime-spec features document.
func Features() (json.RawMessage, error) {
	var out *C.char
	var cerr *C.tong_error
	if err := check(C.tong_features(&out, &cerr), cerr); err != nil {
		return nil, err
	}
	return takeJSON(out), nil
}

// takeJSON copies and frees a string returned by the library.
func takeJSON(s *C.char) json.RawMessage {
	defer C.tong_string_free(s)
	return json.RawMessage(C.GoString(s))
}

// RuntimeOptions configure a Runtime. The zero value is valid.
type RuntimeOptions struct {
	// Root is the state directory; "" means /run/tong.
	Root string
	// PluginPath lists plugin directories separated by ':', searched before the
	// system ones; "" means $TONG_PLUGIN_PATH, the directory beside libtong, then
	// /usr/local/lib/tong/plugins and /usr/lib/tong/plugins.
	PluginPath string
	// Log, when set, receives the library's messages up to LogLevel (LogWarn when
	// zero): the engine's warnings, which otherwise go to stderr, and with LogInfo and
	// LogDebug the outcome of each call.
	Log LogFunc
	// LogLevel is the most detailed level passed to Log.
	LogLevel LogLevel
}

// Runtime is a libtong runtime handle.
type Runtime struct {
	mu sync.RWMutex
	rt *C.tong_runtime
}

// NewRuntime makes a runtime. Nothing is written to disk until the first Create.
func NewRuntime(opts RuntimeOptions) (*Runtime, error) {
	copts := C.tong_go_runtime_options()
	if opts.Root != "" {
		copts.root = C.CString(opts.Root)
		defer C.free(unsafe.Pointer(copts.root))
	}
	if opts.PluginPath != "" {
		copts.plugin_path = C.CString(opts.PluginPath)
		defer C.free(unsafe.Pointer(copts.plugin_path))
	}
	if opts.Log != nil {
		level := opts.LogLevel
		if level == 0 {
			level = LogWarn
		}
		copts.log_level = C.int(level)
		copts.log_fn, copts.log_user_data = logCallback(opts.Log)
	}
	var rt *C.tong_runtime
	var cerr *C.tong_error
	if err := check(C.tong_runtime_new(&copts, &rt, &cerr), cerr); err != nil {
		return nil, err
	}
	r := &Runtime{rt: rt}
	runtime.SetFinalizer(r, (*Runtime).Close)
	return r, nil
}

// Close frees the runtime. Containers opened from it stay usable.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rt != nil {
		C.tong_runtime_free(r.rt)
		r.rt = nil
		runtime.SetFinalizer(r, nil)
	}
	return nil
}

// CreateOptions are the options of Create and Run. The zero value is valid.
type CreateOptions struct {
	// Stdin, Stdout and Stderr become the container's stdio; nil inherits this
	// process's descriptor.
	Stdin, Stdout, Stderr *os.File
	// PidFile, when set, receives the container's pid once created.
	PidFile string
	// Backends chooses a backend plugin per kind ("ns", "cgroup", "rootfs", "net"),
	// such as {"cgroup": "v1"}; kinds not listed use the config's tong.backend.*
	// annotations, then the best usable plugin.
	Backends map[string]string
	// ConsoleSocket is the unix socket that receives the pty master (SCM_RIGHTS) when
	// the config's process.terminal is true.
	ConsoleSocket string
	// Init runs tong's minimal init as the container's pid 1: it reaps orphans and
	// forwards signals to the program (also the tong.init=true annotation).
	Init bool
	// ExtraFiles are passed to the container: entry i becomes its descriptor 3+i, as
	// with exec.Cmd.ExtraFiles (no other descriptor of this process is inherited).
	// libtong passes copies: close yours when Create or Run returns. At most 1000.
	ExtraFiles []*os.File
}

// cOptions holds a C options struct and the C memory it points to.
type cOptions struct {
	opts    C.tong_create_options
	strings []*C.char
	fds     *C.int
}

func (o *cOptions) str(s string) *C.char {
	p := C.CString(s)
	o.strings = append(o.strings, p)
	return p
}

func (o *cOptions) free() {
	for _, p := range o.strings {
		C.free(unsafe.Pointer(p))
	}
	C.free(unsafe.Pointer(o.fds))
}

// cFds copies the descriptors of files into a C array (the options struct, Go memory
// passed to C, must not point at Go memory); nil for none. The caller frees it.
func cFds(files []*os.File) (*C.int, C.size_t, error) {
	if len(files) == 0 {
		return nil, 0, nil
	}
	for i, f := range files {
		if f == nil {
			return nil, 0, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("ExtraFiles[%d] is nil", i)}
		}
	}
	p := (*C.int)(C.malloc(C.size_t(len(files)) * C.size_t(unsafe.Sizeof(C.int(0)))))
	arr := unsafe.Slice(p, len(files))
	for i, f := range files {
		arr[i] = C.int(f.Fd())
	}
	return p, C.size_t(len(files)), nil
}

func fdOf(f *os.File) C.int {
	if f == nil {
		return -1
	}
	return C.int(f.Fd())
}

func newCOptions(opts *CreateOptions) (*cOptions, error) {
	o := &cOptions{opts: C.tong_go_create_options()}
	if opts == nil {
		return o, nil
	}
	o.opts.stdin_fd = fdOf(opts.Stdin)
	o.opts.stdout_fd = fdOf(opts.Stdout)
	o.opts.stderr_fd = fdOf(opts.Stderr)
	if opts.PidFile != "" {
		o.opts.pid_file = o.str(opts.PidFile)
	}
	if opts.ConsoleSocket != "" {
		o.opts.console_socket = o.str(opts.ConsoleSocket)
	}
	if opts.Init {
		o.opts.init = 1
	}
	fds, n, err := cFds(opts.ExtraFiles)
	if err != nil {
		o.free()
		return nil, err
	}
	o.fds, o.opts.extra_fds, o.opts.extra_fds_len = fds, fds, n
	for kind, name := range opts.Backends {
		switch kind {
		case "ns", "namespace":
			o.opts.backend_ns = o.str(name)
		case "cgroup":
			o.opts.backend_cgroup = o.str(name)
		case "rootfs":
			o.opts.backend_rootfs = o.str(name)
		case "net", "network":
			o.opts.backend_net = o.str(name)
		default:
			o.free()
			return nil, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("unknown backend kind %q", kind)}
		}
	}
	return o, nil
}

func keepFiles(opts *CreateOptions) {
	if opts != nil {
		runtime.KeepAlive(opts.Stdin)
		runtime.KeepAlive(opts.Stdout)
		runtime.KeepAlive(opts.Stderr)
		runtime.KeepAlive(opts.ExtraFiles)
	}
}

// Create creates the container id from the OCI bundle directory bundle; it waits for
// Start. Close the returned Container when done with it (that does not delete it).
func (r *Runtime) Create(id, bundle string, opts *CreateOptions) (*Container, error) {
	o, err := newCOptions(opts)
	if err != nil {
		return nil, err
	}
	defer o.free()
	cid, cbundle := C.CString(id), C.CString(bundle)
	defer C.free(unsafe.Pointer(cid))
	defer C.free(unsafe.Pointer(cbundle))
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rt == nil {
		return nil, ErrClosed
	}
	var c *C.tong_container
	var cerr *C.tong_error
	err = check(C.tong_container_create(r.rt, cid, cbundle, &o.opts, &c, &cerr), cerr)
	keepFiles(opts)
	if err != nil {
		return nil, err
	}
	return newContainer(c, id), nil
}

// Open returns a handle on the existing container id.
func (r *Runtime) Open(id string) (*Container, error) {
	cid := C.CString(id)
	defer C.free(unsafe.Pointer(cid))
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rt == nil {
		return nil, ErrClosed
	}
	var c *C.tong_container
	var cerr *C.tong_error
	if err := check(C.tong_container_open(r.rt, cid, &c, &cerr), cerr); err != nil {
		return nil, err
	}
	return newContainer(c, id), nil
}

// Run creates, starts and waits for the container id, deletes it, and returns its
// exit code (128 + signal when a signal killed it).
func (r *Runtime) Run(id, bundle string, opts *CreateOptions) (int, error) {
	o, err := newCOptions(opts)
	if err != nil {
		return -1, err
	}
	defer o.free()
	cid, cbundle := C.CString(id), C.CString(bundle)
	defer C.free(unsafe.Pointer(cid))
	defer C.free(unsafe.Pointer(cbundle))
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rt == nil {
		return -1, ErrClosed
	}
	var code C.int
	var cerr *C.tong_error
	err = check(C.tong_container_run(r.rt, cid, cbundle, &o.opts, &code, &cerr), cerr)
	keepFiles(opts)
	if err != nil {
		return -1, err
	}
	return int(code), nil
}

// List returns the state of every container under the runtime's root.
func (r *Runtime) List() ([]State, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rt == nil {
		return nil, ErrClosed
	}
	var out *C.char
	var cerr *C.tong_error
	if err := check(C.tong_runtime_list(r.rt, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	var states []State
	if err := json.Unmarshal(takeJSON(out), &states); err != nil {
		return nil, err
	}
	return states, nil
}

// State is a container's OCI state, with the backends it uses by kind.
type State struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     string            `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Backends    map[string]string `json:"backends"`
}

// Container is a handle on one container of a Runtime.
type Container struct {
	mu sync.RWMutex
	c  *C.tong_container
	id string
}

func newContainer(c *C.tong_container, id string) *Container {
	ct := &Container{c: c, id: id}
	runtime.SetFinalizer(ct, (*Container).Close)
	return ct
}

// ID returns the container's id.
func (c *Container) ID() string { return c.id }

// Close frees the handle; the container itself is left as it is.
func (c *Container) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		C.tong_container_free(c.c)
		c.c = nil
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// call runs f with the C handle, unless the container is closed.
func (c *Container) call(f func(h *C.tong_container, cerr **C.tong_error) C.enum_tong_error_code) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.c == nil {
		return ErrClosed
	}
	var cerr *C.tong_error
	code := f(c.c, &cerr)
	return check(code, cerr)
}

// Start lets a created container exec its program.
func (c *Container) Start() error {
	return c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_start(h, e)
	})
}

// Kill sends sig to the container's init, or with all to each of its processes.
func (c *Container) Kill(sig syscall.Signal, all bool) error {
	var flags C.uint32_t
	if all {
		flags = C.TONG_KILL_ALL
	}
	return c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_kill(h, C.int(sig), flags, e)
	})
}

// Wait waits for the container's init to exit and returns its exit code (128 + signal
// when a signal killed it). Only the process that created the container can wait, once.
func (c *Container) Wait() (int, error) {
	var code C.int
	err := c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_wait(h, &code, e)
	})
	if err != nil {
		return -1, err
	}
	return int(code), nil
}

// Delete removes the container and everything it made; force kills it first if it
// runs, and succeeds when it does not exist.
func (c *Container) Delete(force bool) error {
	var flags C.uint32_t
	if force {
		flags = C.TONG_DELETE_FORCE
	}
	return c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_delete(h, flags, e)
	})
}

// Pause freezes the container's processes.
func (c *Container) Pause() error {
	return c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_pause(h, e)
	})
}

// Resume thaws a paused container.
func (c *Container) Resume() error {
	return c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_resume(h, e)
	})
}

func (c *Container) json(f func(h *C.tong_container, out **C.char, e **C.tong_error) C.enum_tong_error_code) (json.RawMessage, error) {
	var out *C.char
	err := c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return f(h, &out, e)
	})
	if err != nil {
		return nil, err
	}
	return takeJSON(out), nil
}

// State returns the container's OCI state.
func (c *Container) State() (*State, error) {
	raw, err := c.json(func(h *C.tong_container, out **C.char, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_state(h, out, e)
	})
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Ps returns the host pids of every process of the container.
func (c *Container) Ps() ([]int, error) {
	raw, err := c.json(func(h *C.tong_container, out **C.char, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_ps(h, out, e)
	})
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(raw, &pids); err != nil {
		return nil, err
	}
	return pids, nil
}

// Stats returns the container's cgroup statistics (memory, cpu, pids) as JSON.
func (c *Container) Stats() (json.RawMessage, error) {
	return c.json(func(h *C.tong_container, out **C.char, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_stats(h, out, e)
	})
}

// User is the identity of an exec'd process.
type User struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
}

// Process is the OCI process an Exec runs (the fields of config.json's process that
// exec uses most; Cwd defaults to "/").
type Process struct {
	Args     []string `json:"args"`
	Env      []string `json:"env,omitempty"`
	Cwd      string   `json:"cwd"`
	User     User     `json:"user"`
	Terminal bool     `json:"terminal,omitempty"`
}

// ExecOptions are the options of Exec. The zero value is valid.
type ExecOptions struct {
	// Stdin, Stdout and Stderr become the process's stdio; nil inherits this
	// process's descriptor.
	Stdin, Stdout, Stderr *os.File
	// PidFile, when set, receives the process's pid once it runs.
	PidFile string
	// ConsoleSocket receives the pty master when the process has Terminal set.
	ConsoleSocket string
	// Detach returns once the process runs (exit code 0); libtong reaps it.
	Detach bool
	// ExtraFiles are passed to the process: entry i becomes its descriptor 3+i.
	ExtraFiles []*os.File
}

// Exec runs another process in the running container, in all its namespaces and its
// cgroup, and returns its exit code (128 + signal when killed; 0 when detached).
func (c *Container) Exec(p *Process, opts *ExecOptions) (int, error) {
	proc := *p
	if proc.Cwd == "" {
		proc.Cwd = "/"
	}
	doc, err := json.Marshal(&proc)
	if err != nil {
		return -1, err
	}
	cproc := C.CString(string(doc))
	defer C.free(unsafe.Pointer(cproc))
	copts := C.tong_go_exec_options()
	var strs []*C.char
	defer func() {
		for _, s := range strs {
			C.free(unsafe.Pointer(s))
		}
	}()
	if opts != nil {
		copts.stdin_fd = fdOf(opts.Stdin)
		copts.stdout_fd = fdOf(opts.Stdout)
		copts.stderr_fd = fdOf(opts.Stderr)
		if opts.PidFile != "" {
			copts.pid_file = C.CString(opts.PidFile)
			strs = append(strs, copts.pid_file)
		}
		if opts.ConsoleSocket != "" {
			copts.console_socket = C.CString(opts.ConsoleSocket)
			strs = append(strs, copts.console_socket)
		}
		if opts.Detach {
			copts.detach = 1
		}
		fds, n, err := cFds(opts.ExtraFiles)
		if err != nil {
			return -1, err
		}
		defer C.free(unsafe.Pointer(fds))
		copts.extra_fds, copts.extra_fds_len = fds, n
	}
	var code C.int
	err = c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_exec(h, cproc, &copts, &code, e)
	})
	if opts != nil {
		runtime.KeepAlive(opts.Stdin)
		runtime.KeepAlive(opts.Stdout)
		runtime.KeepAlive(opts.Stderr)
		runtime.KeepAlive(opts.ExtraFiles)
	}
	if err != nil {
		return -1, err
	}
	return int(code), nil
}

// Update applies new cgroup limits to the live container; resources is an OCI
// linux.resources JSON object such as {"pids":{"limit":10}}.
func (c *Container) Update(resources json.RawMessage) error {
	cres := C.CString(string(resources))
	defer C.free(unsafe.Pointer(cres))
	return c.call(func(h *C.tong_container, e **C.tong_error) C.enum_tong_error_code {
		return C.tong_container_update(h, cres, e)
	})
}

// logCallback is the C callback and its user data for f. The handle is kept for the
// life of the process: containers opened from a runtime outlive it and still log.
func logCallback(f LogFunc) (C.tong_log_fn, unsafe.Pointer) {
	h := cgo.NewHandle(f)
	return C.tong_log_fn(C.tongGoLog), C.tong_go_handle(C.uintptr_t(h))
}
