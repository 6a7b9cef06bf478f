package tong

/*
#include <tong.h>
*/
import "C"

import "encoding/json"

// PoolStatus is the state of a runtime's pool of ready-made network namespaces
// (docs/pools.md).
type PoolStatus struct {
	// NetnsTarget is how many ready namespaces Fill keeps (0: the pool is off).
	NetnsTarget uint32 `json:"netns_target"`
	// NetnsReady is how many are ready to be taken by a create.
	NetnsReady uint32 `json:"netns_ready"`
}

// PoolStatus returns the pool's target and how many namespaces are ready.
func (r *Runtime) PoolStatus() (PoolStatus, error) {
	return r.poolCall(func(out **C.char, cerr **C.tong_error) C.enum_tong_error_code {
		return C.tong_pool_status(r.rt, out, cerr)
	})
}

// PoolFill sets the pool's target to target (a negative target keeps the recorded one)
// and makes network namespaces until that many are ready. A long-lived embedder calls
// PoolFill(-1) after its containers have started, off their path (say, from a
// goroutine), to refill what creates took.
func (r *Runtime) PoolFill(target int64) (PoolStatus, error) {
	return r.poolCall(func(out **C.char, cerr **C.tong_error) C.enum_tong_error_code {
		return C.tong_pool_fill(r.rt, C.int64_t(target), out, cerr)
	})
}

// poolCall runs a pool call that reports the pool's state as JSON.
func (r *Runtime) poolCall(call func(**C.char, **C.tong_error) C.enum_tong_error_code) (PoolStatus, error) {
	var status PoolStatus
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rt == nil {
		return status, ErrClosed
	}
	var out *C.char
	var cerr *C.tong_error
	if err := check(call(&out, &cerr), cerr); err != nil {
		return status, err
	}
	err := json.Unmarshal(takeJSON(out), &status)
	return status, err
}

// PoolDrain sets the target to 0 and destroys every pooled namespace.
func (r *Runtime) PoolDrain() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rt == nil {
		return ErrClosed
	}
	var cerr *C.tong_error
	return check(C.tong_pool_drain(r.rt, &cerr), cerr)
}
