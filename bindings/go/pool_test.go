package tong

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A create takes a namespace from the pool; the embedder refills it; drain leaves
// nothing under the root.
func TestPool(t *testing.T) {
	if !HasAPIExtension("pool") {
		t.Fatal("libtong lacks the pool extension")
	}
	rt, root := newRuntime(t)
	if s, err := rt.PoolStatus(); err != nil || s != (PoolStatus{}) {
		t.Fatalf("no pool: %+v, %v", s, err)
	}
	if s, err := rt.PoolFill(2); err != nil || s != (PoolStatus{NetnsTarget: 2, NetnsReady: 2}) {
		t.Fatalf("fill 2: %+v, %v", s, err)
	}
	t.Cleanup(func() { rt.PoolDrain() })
	// The sleeper with a network namespace.
	dir := bundle(t, "sleep", "1000")
	config, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	withNet := strings.Replace(string(config), `{"type": "pid"}`, `{"type": "pid"}, {"type": "network"}`, 1)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(withNet), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := rt.Create(uniqueID("go-pool"), dir, &CreateOptions{Stdout: devNull(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if s, _ := rt.PoolStatus(); s.NetnsReady != 1 {
		t.Errorf("the create took one: %+v", s)
	}
	if s, err := rt.PoolFill(-1); err != nil || s != (PoolStatus{NetnsTarget: 2, NetnsReady: 2}) {
		t.Errorf("refill: %+v, %v", s, err)
	}
	if err := c.Delete(true); err != nil {
		t.Fatal(err)
	}
	if err := rt.PoolDrain(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "-pool")); !os.IsNotExist(err) {
		t.Errorf("pool directory left: %v", err)
	}
}
