//! The engine's one log. Whatever the engine has to say without failing (a warning: a
//! cgroup it may not create without root, a capability the host lacks, a poststart hook
//! that failed) goes to the [`Log`] of the [`Runtime`](crate::Runtime) being called:
//! stderr by default, the CLI's stderr and `--log` file, or the C caller's log callback
//! (and through it Go's).
//!
//! The warning sites are deep in the engine and on the caller's thread, so the runtime
//! makes its log the thread's current one for the length of each call (`enter`)
//! instead of handing it down through every function.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// How much a message matters; the numbers are those of the C ABI's `tong_log_level`.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A call failed.
    Error = 1,
    /// A problem the engine worked around.
    Warn = 2,
    /// A lifecycle event.
    Info = 3,
    /// Every call, with its arguments.
    Debug = 4,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Where the engine's messages go. Called from any thread that calls the runtime.
pub trait Log: Send + Sync {
    fn log(&self, level: Level, message: &str);
}

/// The default log: warnings and errors on stderr, written so that a closed stderr (a
/// library caller's) cannot panic as `eprintln!` would.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl Log for Stderr {
    fn log(&self, level: Level, message: &str) {
        use std::io::Write;
        if level <= Level::Warn {
            let _ = writeln!(std::io::stderr(), "tong: {}: {message}", level.as_str());
        }
    }
}

/// A shared log, as a runtime holds it.
#[derive(Clone)]
pub struct SharedLog(pub Arc<dyn Log>);

impl Default for SharedLog {
    fn default() -> Self {
        SharedLog(Arc::new(Stderr))
    }
}

impl fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedLog")
    }
}

thread_local! {
    static CURRENT: RefCell<Option<SharedLog>> = const { RefCell::new(None) };
}

/// The thread's log until dropped (then the one before it again).
#[must_use = "the log is current only while the scope lives"]
pub(crate) struct Scope(Option<SharedLog>);

/// Makes `log` the thread's current log for the scope's life.
pub(crate) fn enter(log: &SharedLog) -> Scope {
    Scope(CURRENT.with(|c| c.replace(Some(log.clone()))))
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Sends `message` to the thread's current log (stderr outside any runtime call).
pub(crate) fn log(level: Level, message: fmt::Arguments<'_>) {
    let current = CURRENT.with(|c| c.borrow().clone());
    let text = message.to_string();
    match current {
        Some(log) => log.0.log(level, &text),
        None => Stderr.log(level, &text),
    }
}

/// A warning: something the engine worked around.
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    log(Level::Warn, message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(Level, String)>>);

    impl Log for Collect {
        fn log(&self, level: Level, message: &str) {
            self.0.lock().unwrap().push((level, message.to_string()));
        }
    }

    #[test]
    fn warnings_reach_the_current_log_and_scopes_nest() {
        let outer = Arc::new(Collect::default());
        let inner = Arc::new(Collect::default());
        {
            let _a = enter(&SharedLog(outer.clone()));
            warn(format_args!("one {}", 1));
            {
                let _b = enter(&SharedLog(inner.clone()));
                warn(format_args!("two"));
            }
            log(Level::Info, format_args!("three"));
        }
        // Outside any scope: stderr, not the collectors.
        warn(format_args!("to stderr"));
        assert_eq!(
            *outer.0.lock().unwrap(),
            vec![
                (Level::Warn, "one 1".to_string()),
                (Level::Info, "three".to_string())
            ]
        );
        assert_eq!(
            *inner.0.lock().unwrap(),
            vec![(Level::Warn, "two".to_string())]
        );
    }

    #[test]
    fn levels_are_the_c_numbers() {
        assert_eq!(
            [Level::Error, Level::Warn, Level::Info, Level::Debug].map(|l| l as i32),
            [1, 2, 3, 4]
        );
    }
}
