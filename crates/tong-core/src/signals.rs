//! The calling thread's signal mask around clone and fork: the parent blocks every
//! signal so a child starts with none delivered, until it has reset its handlers
//! ([`crate::child::signals`]).

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};

/// Blocks every signal in the calling thread; returns the mask to restore.
pub fn block_all_signals() -> SigSet {
    let mut old = SigSet::empty();
    // Cannot fail: the set is valid and the operation is SIG_SETMASK.
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Restores a signal mask saved by [`block_all_signals`].
pub fn restore_signal_mask(old: &SigSet) {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}
