//! A watchdog over plugin calls. A plugin runs inside our process, so a call that hangs
//! cannot be cancelled: no thread can be safely stopped half-way through foreign code.
//! After `TONG_PLUGIN_TIMEOUT` seconds (default 300; 0 turns the watchdog off) the
//! watchdog thread says which plugin and which operation hung and ends the whole process
//! with exit code 124 (as timeout(1) does). Everything create made is recorded before
//! each step, so `tong delete --force ID` undoes it afterwards.
//!
//! One thread, started at the first plugin call, waits for the earliest deadline among
//! the calls in flight (the cgroup warm-up runs beside the main thread), or one timeout
//! when none is. Arming and disarming only update the table: the watchdog is never woken
//! for them, since a new call's deadline is never earlier than the one it waits for.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Default limit of one plugin call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Exit code when a plugin call hangs.
pub const EXIT_CODE: i32 = 124;

#[derive(Default)]
struct Calls {
    next: u64,
    /// Call id -> (deadline, "kind=name op").
    in_flight: BTreeMap<u64, (Instant, String)>,
}

struct Watchdog {
    timeout: Duration,
    calls: Mutex<Calls>,
}

/// A plugin call being watched; dropping it (the call returned) disarms it.
pub struct Armed(u64);

fn watchdog() -> Option<&'static Watchdog> {
    static WATCHDOG: OnceLock<Option<&'static Watchdog>> = OnceLock::new();
    *WATCHDOG.get_or_init(|| {
        let timeout = std::env::var("TONG_PLUGIN_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        if timeout.is_zero() {
            return None;
        }
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            timeout,
            calls: Mutex::default(),
        }));
        // Born with every signal blocked, so signals sent to tong (SIGTERM that `run`
        // forwards to the container, SIGINT) never land on this thread.
        let mask = crate::signals::block_all_signals();
        let spawned = std::thread::Builder::new()
            .name("tong-watchdog".into())
            .spawn(move || dog.watch());
        crate::signals::restore_signal_mask(&mask);
        spawned.ok()?;
        Some(dog)
    })
}

/// Starts watching one plugin call, described as "kind=name op".
pub fn arm(what: impl FnOnce() -> String) -> Option<Armed> {
    let dog = watchdog()?;
    let mut calls = dog.calls.lock().unwrap_or_else(PoisonError::into_inner);
    let id = calls.next;
    calls.next += 1;
    calls
        .in_flight
        .insert(id, (Instant::now() + dog.timeout, what()));
    // No wake-up: every call has the same timeout, so this deadline is no earlier than
    // the one the watchdog sleeps until (see `watch`), and arming costs no system call.
    Some(Armed(id))
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(dog) = watchdog() {
            let mut calls = dog.calls.lock().unwrap_or_else(PoisonError::into_inner);
            calls.in_flight.remove(&self.0);
        }
    }
}

impl Watchdog {
    fn watch(&self) {
        loop {
            let wait = {
                let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                match calls.in_flight.values().min_by_key(|(d, _)| *d) {
                    Some((deadline, what)) if *deadline <= now => {
                        eprintln!(
                            "tong: plugin {what} did not return within {:?}: giving up (a plugin call cannot be cancelled); `tong delete --force ID` undoes what was made",
                            self.timeout
                        );
                        // SAFETY: ends the process at once; the hung call cannot be unwound.
                        unsafe { libc::_exit(EXIT_CODE) };
                    }
                    Some((deadline, _)) => *deadline - now,
                    // Nothing in flight: a call armed from now on expires after `now +
                    // timeout` at the earliest, so waking then is never late.
                    None => self.timeout,
                }
            };
            std::thread::sleep(wait);
        }
    }
}
