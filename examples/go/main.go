// Command run runs one container through its lifecycle with the tong Go binding.
//
//	PKG_CONFIG_PATH=/usr/local/lib/pkgconfig go build -o run-container .
//	./run-container BUNDLE [ROOT]
//
// BUNDLE is an OCI bundle directory (ci/make-bundle makes one); ROOT is the state root
// (default: a fresh temporary directory, removed at the end). The program exits with
// the container's exit code.
package main

import (
	"fmt"
	"os"

	"tong.dev/tong"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintf(os.Stderr, "usage: %s BUNDLE [ROOT]\n", os.Args[0])
		os.Exit(2)
	}
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "run-container:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(args []string) (int, error) {
	bundle := args[0]
	root := ""
	if len(args) == 2 {
		root = args[1]
	} else {
		dir, err := os.MkdirTemp("", "tong-example-go-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		root = dir
	}
	fmt.Printf("libtong %s (C ABI %d)\n", tong.Version(), tong.ABIVersion())

	rt, err := tong.NewRuntime(tong.RuntimeOptions{Root: root})
	if err != nil {
		return 0, err
	}
	defer rt.Close()

	id := fmt.Sprintf("example-go-%d", os.Getpid())
	c, err := rt.Create(id, bundle, &tong.CreateOptions{Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ok := false
	defer func() {
		if !ok {
			c.Delete(true) // leave nothing behind after a failure
		}
	}()

	state, err := c.State()
	if err != nil {
		return 0, err
	}
	fmt.Printf("created %s: status %s, pid %d, backends %v\n", state.ID, state.Status, state.Pid, state.Backends)
	if err := c.Start(); err != nil {
		return 0, err
	}
	code, err := c.Wait()
	if err != nil {
		return 0, err
	}
	if err := c.Delete(false); err != nil {
		return 0, err
	}
	ok = true
	fmt.Printf("container exited with %d and was deleted\n", code)
	return code, nil
}
