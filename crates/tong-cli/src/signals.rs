//! Signal names and numbers as `kill` accepts them: `9`, `KILL`, `SIGKILL`, `sigkill`.

use tong::Error;

const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal given by number or name.
pub fn parse(text: &str) -> Result<i32, Error> {
    let max = libc::SIGRTMAX();
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=max).contains(&n) {
            Ok(n)
        } else {
            Err(Error::invalid(format!(
                "invalid signal number {n}: expected 1 to {max}"
            )))
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::invalid(format!("unknown signal {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse("sigusr1").unwrap(), libc::SIGUSR1);
        assert!(parse("0").is_err());
        assert!(parse("NOPE").unwrap_err().to_string().contains("NOPE"));
    }
}
