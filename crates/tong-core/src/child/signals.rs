//! The child's signal dispositions and mask between clone and exec: the parent clones
//! with every signal blocked ([`crate::signals`]); the child resets every handler to
//! its default before it unblocks them.

/// Handlers of the parent (a Go runtime's, Rust's SIGPIPE ignore) must not reach the
/// container: every signal goes back to its default action.
pub(crate) fn reset_handlers() {
    // SAFETY: sigaction with a zeroed struct (SIG_DFL, empty mask) for each signal;
    // failures (SIGKILL, SIGSTOP, reserved signals) are harmless and ignored.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            libc::sigaction(sig, &raw const dfl, std::ptr::null_mut());
        }
    }
}

/// Blocks every signal (the child reporting a failure: a parent that went away must
/// not kill it with SIGPIPE).
pub(crate) fn block_all() {
    set_mask(true);
}

/// Unblocks every signal, right before exec.
pub(crate) fn unblock_all() {
    set_mask(false);
}

fn set_mask(block: bool) {
    // SAFETY: a set on a local; pthread_sigmask affects only this (single) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if block {
            libc::sigfillset(&raw mut set);
        } else {
            libc::sigemptyset(&raw mut set);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
    }
}
