//! The calling thread's signal mask and dispositions, around clone and fork: the parent
//! blocks every signal so a child starts with none delivered, and the child resets
//! every handler to its default before it unblocks them.

/// Handlers of the parent (a Go runtime's, Rust's SIGPIPE ignore) must not reach the
/// container: every signal goes back to its default action.
pub(crate) fn reset_signal_handlers() {
    // SAFETY: sigaction with a zeroed struct (SIG_DFL, empty mask) for each signal;
    // failures (SIGKILL, SIGSTOP, reserved signals) are harmless and ignored.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
}

/// Blocks every signal in the calling thread; the parent does this around clone so the
/// child starts with signals blocked until its handlers are reset.
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on locals; pthread_sigmask affects only this thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Restores a signal mask saved by [`block_all_signals`].
pub fn restore_signal_mask(old: &libc::sigset_t) {
    // SAFETY: restores this thread's mask from a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

pub(crate) fn unblock_all_signals() {
    // SAFETY: an empty set on a local; only this (single) thread is affected.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}
