//! `process.terminal`: a pseudo-terminal for the container's process, handed to the
//! engine (containerd, podman) over `--console-socket` as runc does, or, for a foreground
//! `run` or `exec` without one, kept by tong, which relays its own stdio to it.
//!
//! The parent connects to the console socket before clone (or, to relay, makes a
//! socketpair and keeps one end) and gives the child the connected descriptor. The child
//! opens the pty in the container's own devpts, sends the master over it and takes the
//! slave as its terminal ([`crate::child::terminal`]).

use std::io::IoSliceMut;
use std::io::Stdin;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::termios::{isatty, tcgetwinsize, tcsetwinsize};

use crate::error::{Error, Result};

/// Where the pty master of a process with `process.terminal` goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Console {
    /// Nowhere: a process with a terminal is refused.
    #[default]
    None,
    /// To the engine listening on this unix socket (`--console-socket`).
    Socket(PathBuf),
    /// To this process, which relays its own stdin and stdout to it until the process
    /// exits (a foreground `run` or `exec` without a console socket, as runc does).
    /// Refused when detached: nobody would be left to relay.
    Relay,
}

/// Connects to the engine's console socket (parent side, before clone). The descriptor
/// is close-on-exec: the child closes it once the master is sent.
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd> {
    let stream = UnixStream::connect(path).map_err(|e| {
        Error::invalid(format!(
            "cannot connect to the console socket {}: {e}",
            path.display()
        ))
    })?;
    Ok(OwnedFd::from(stream))
}

/// Checks that `terminal` and the console agree, with runc's rules. `foreground`: the
/// caller waits for the process here (a `run` or `exec` that is not detached).
pub fn check_console(terminal: bool, console: &Console, foreground: bool) -> Result<()> {
    match (terminal, console) {
        (true, Console::None) => Err(no_console_socket()),
        (true, Console::Relay) if !foreground => Err(no_console_socket()),
        (false, Console::Socket(_)) => Err(Error::invalid(
            "--console-socket given but process.terminal is false (use --tty with exec, or set process.terminal)",
        )),
        _ => Ok(()),
    }
}

fn no_console_socket() -> Error {
    Error::invalid(
        "process.terminal is true but no --console-socket was given: create, run -d and exec -d send the terminal's master to an engine's socket (a foreground `run` or `exec -t` relays the terminal itself)",
    )
}

/// The descriptors of a process's console, made before clone.
#[derive(Default)]
pub(crate) struct ConsoleEnds {
    /// Goes to the child, which sends the master over it.
    pub child: Option<OwnedFd>,
    /// Ours, to receive the master on when relaying.
    pub relay: Option<OwnedFd>,
}

/// Checks the console (see [`check_console`]) and makes its descriptors.
pub(crate) fn console_ends(
    terminal: bool,
    console: &Console,
    foreground: bool,
) -> Result<ConsoleEnds> {
    check_console(terminal, console, foreground)?;
    match console {
        _ if !terminal => Ok(ConsoleEnds::default()),
        Console::Socket(path) => Ok(ConsoleEnds {
            child: Some(connect_console_socket(path)?),
            relay: None,
        }),
        Console::Relay => {
            let (ours, child) =
                UnixStream::pair().map_err(|e| Error::os("socketpair for the terminal", e))?;
            Ok(ConsoleEnds {
                child: Some(child.into()),
                relay: Some(ours.into()),
            })
        }
        Console::None => Ok(ConsoleEnds::default()),
    }
}

/// Receives the pty master the child sent on `socket`.
fn receive_master(socket: &OwnedFd) -> Result<OwnedFd> {
    let mut name = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        match recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Err(rustix::io::Errno::INTR) => {}
            other => break other,
        }
    }
    .map_err(|e| Error::os("receive the terminal's master", e))?;
    let mut master = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                master.get_or_insert(fd);
            }
        }
    }
    master.ok_or_else(|| {
        Error::Container("the container's process sent no terminal (it exited first)".into())
    })
}

/// Puts stdin in raw mode while it lives (when it is a terminal); restores it on drop.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !isatty(&stdin) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())
            .map_err(|e| Error::os("read the terminal's mode (tcgetattr)", e))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| Error::os("set the terminal raw (tcsetattr)", e))?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// A foreground process's terminal: tong's stdin goes to the pty master, the master's
/// output to tong's stdout, while stdin (when a terminal) is raw. Driven by the wait for
/// the process ([`crate::process`]), which polls [`Relay::poll_fds`] beside its own.
pub(crate) struct Relay {
    master: OwnedFd,
    /// Read from stdin, not yet taken by the master (it is non-blocking: a container that
    /// does not read its input must not stop its output from flowing).
    input: Vec<u8>,
    stdin_open: bool,
    master_open: bool,
    stdout_open: bool,
    stdin: Stdin,
    _raw: Option<RawMode>,
}

/// Which of the relay's descriptors `poll` found ready.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ready {
    stdin: bool,
    master: bool,
}

impl Relay {
    /// Receives the master on `socket`, gives it the host terminal's size and makes stdin
    /// raw. Call before the process starts, so it sees the right size at once.
    pub(crate) fn receive(socket: &OwnedFd) -> Result<Relay> {
        let received = receive_master(socket)?;
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let fcntl_error = |e| Error::os("fcntl on the terminal's master", e);
        // Above stdio: with tong's stdin or stdout closed, the master could take its
        // number, and the relay would copy it to itself.
        let master = rustix::io::fcntl_dupfd_cloexec(&received, 3)
            .map_err(|e| Error::os("fcntl on the terminal's master", e))?;
        drop(received);
        let flags = fcntl(master.as_raw_fd(), FcntlArg::F_GETFL).map_err(fcntl_error)?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(fcntl_error)?;
        let relay = Relay {
            master,
            input: Vec::new(),
            stdin_open: true,
            master_open: true,
            stdout_open: true,
            stdin: std::io::stdin(),
            _raw: None,
        };
        relay.resize();
        Ok(Relay {
            _raw: RawMode::enter()?,
            ..relay
        })
    }

    /// Copies the host terminal's window size to the pty (at start and on SIGWINCH); the
    /// kernel then signals the pty's foreground process group.
    pub(crate) fn resize(&self) {
        // The first of stdin and stdout that is a terminal.
        let stdout = std::io::stdout();
        let host = [self.stdin.as_fd(), stdout.as_fd()]
            .into_iter()
            .find(|fd| isatty(fd));
        if let Some(size) = host.and_then(|fd| tcgetwinsize(fd).ok()) {
            let _ = tcsetwinsize(&self.master, size);
        }
    }

    /// Appends what to poll for: stdin when there is room for input, the master for
    /// output and for pending input.
    pub(crate) fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        if self.stdin_open && self.input.is_empty() {
            fds.push(PollFd::new(self.stdin.as_fd(), PollFlags::POLLIN));
        }
        if self.master_open {
            let out = if self.input.is_empty() {
                PollFlags::empty()
            } else {
                PollFlags::POLLOUT
            };
            fds.push(PollFd::new(self.master.as_fd(), PollFlags::POLLIN | out));
        }
    }

    /// What `poll` found ready among the entries [`Relay::poll_fds`] added.
    pub(crate) fn ready(fds: &[PollFd]) -> Ready {
        let mut ready = Ready::default();
        for pfd in fds {
            if pfd.revents().is_some_and(|r| !r.is_empty()) {
                if pfd.as_fd().as_raw_fd() == 0 {
                    ready.stdin = true;
                } else {
                    ready.master = true;
                }
            }
        }
        ready
    }

    /// Moves what `poll` found ready.
    pub(crate) fn pump(&mut self, ready: Ready) {
        if ready.stdin {
            self.read_input();
        }
        if ready.master {
            self.write_input();
            self.read_output();
        }
    }

    /// Once the process exited: copies out what it wrote and nobody read yet. A process
    /// it left behind may still hold the pty; what it writes later is not waited for.
    pub(crate) fn drain(&mut self) {
        self.read_output();
    }

    fn read_input(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(0, &mut buf) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => self.input.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            // EOF or a hung-up terminal: no more input, but the output still flows.
            Err(_) => self.stdin_open = false,
        }
    }

    fn write_input(&mut self) {
        while self.master_open && !self.input.is_empty() {
            match nix::unistd::write(&self.master, &self.input) {
                Ok(n) => {
                    self.input.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                // The slave is gone: nobody will read this.
                Err(_) => self.input.clear(),
            }
        }
    }

    fn read_output(&mut self) {
        let mut buf = [0u8; 16384];
        while self.master_open {
            match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                Ok(0) => self.master_open = false,
                Ok(n) => self.write_output(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                // EIO: every slave descriptor is closed and the output is all read.
                Err(_) => self.master_open = false,
            }
        }
    }

    /// Writes to stdout; after a failure the output is read and dropped, so the process
    /// never blocks on a full pty.
    fn write_output(&mut self, mut data: &[u8]) {
        let stdout = std::io::stdout();
        while self.stdout_open && !data.is_empty() {
            match nix::unistd::write(stdout.as_fd(), data) {
                Ok(n) => data = &data[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    // A non-blocking stdout (shared with another program): wait for room.
                    let mut p = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut p, PollTimeout::from(1000u16));
                }
                Err(_) => self.stdout_open = false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut b = [0u8; 20];
        assert_eq!(tong_sys::write_decimal(&mut b, 0), 1);
        assert_eq!(&b[..1], b"0");
        assert_eq!(tong_sys::write_decimal(&mut b, 4071), 4);
        assert_eq!(&b[..4], b"4071");
    }

    #[test]
    fn console_rules() {
        let socket = Console::Socket("/x".into());
        for foreground in [false, true] {
            assert!(check_console(true, &Console::None, foreground).is_err());
            assert!(check_console(false, &socket, foreground).is_err());
            assert!(check_console(true, &socket, foreground).is_ok());
            assert!(check_console(false, &Console::None, foreground).is_ok());
            assert!(check_console(false, &Console::Relay, foreground).is_ok());
        }
        // Detached, nobody is left to relay: the error names both ways out.
        let msg = check_console(true, &Console::Relay, false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--console-socket") && msg.contains("foreground"),
            "{msg}"
        );
        assert!(check_console(true, &Console::Relay, true).is_ok());
    }
}
