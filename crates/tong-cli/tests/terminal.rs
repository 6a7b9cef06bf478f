//! `process.terminal` with `--console-socket`: the test is the engine. It listens on a
//! unix socket, receives the pty master with SCM_RIGHTS as containerd and podman do,
//! types a command into the container's terminal and reads the answer.
//!
//! Without one, in the foreground: the test is the user's terminal. It opens a pty of its
//! own, runs `tong run` or `tong exec -t` on it (as its controlling terminal), types on
//! the master and reads what tong relays from the container's pty.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use nix::pty::{openpty, Winsize};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{tcgetattr, LocalFlags, Termios};

/// A console socket in a private directory; `receive` waits for one connection and
/// returns the descriptor and the name sent with it.
struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> ConsoleSocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn receive(&self) -> (OwnedFd, String) {
        let (stream, _) = self.listener.accept().unwrap();
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fd = None;
        for cmsg in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel just installed this descriptor for us.
                fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        let len = msg.bytes;
        let name = String::from_utf8_lossy(&name[..len]).into_owned();
        (fd.expect("no descriptor in the console message"), name)
    }
}

/// Writes `input` to the terminal and reads until `expect` shows up (10 s at most).
fn converse(master: &OwnedFd, input: &str, expect: &str) -> String {
    nix::unistd::write(master, input.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains(expect) {
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one live pollfd.
        if unsafe { libc::poll(&raw mut pfd, 1, 200) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        seen.contains(expect),
        "expected {expect:?} from the terminal, got {seen:?}"
    );
    seen
}

fn terminal_config(args: &[&str]) -> serde_json::Value {
    let mut cfg = config(args);
    cfg["process"]["terminal"] = true.into();
    cfg
}

#[test]
fn a_terminal_container_answers_through_the_console_socket() {
    if !root_or_skip("a_terminal_container_answers_through_the_console_socket") {
        return;
    }
    converse_with_a_terminal_container(&[]);
}

/// In init mode the terminal belongs to the program (pid 2), which leads its session.
#[test]
fn a_terminal_container_in_init_mode() {
    if !root_or_skip("a_terminal_container_in_init_mode") {
        return;
    }
    converse_with_a_terminal_container(&["--init"]);
}

fn converse_with_a_terminal_container(extra: &[&str]) {
    let tong = Tong::new();
    let bundle = Bundle::new(&terminal_config(&["sh"]));
    let id = unique_id("tty");
    let console = ConsoleSocket::new();
    let receiver = std::thread::scope(|s| {
        let r = s.spawn(|| console.receive());
        let mut args = vec!["create", "--console-socket", console.path()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", bundle.path().to_str().unwrap(), &id]);
        tong.ok(&args);
        r.join().unwrap()
    });
    let (master, name) = receiver;
    assert!(
        name.starts_with("/dev/pts/"),
        "name sent with the master: {name:?}"
    );
    tong.ok(&["start", &id]);
    // The shell's stdio is the pty, with echo (what is expected is never typed as is).
    let out = converse(&master, "echo answer-$((6*7)); tty\n", &name);
    assert!(out.contains("answer-42"), "{out}");
    // It leads its own session, with the pty as its controlling terminal.
    let out = converse(
        &master,
        "[ $(cut -d' ' -f6 /proc/$$/stat) = $$ ] && echo leader-$((2+3)); test -t 0 && echo tty-$((1+1))\n",
        "tty-2",
    );
    assert!(out.contains("leader-5"), "{out}");
    // tty_nr (field 7 of stat) is set only for a process with a controlling terminal.
    converse(
        &master,
        "[ $(cut -d' ' -f7 /proc/$$/stat) != 0 ] && echo ctty-$((3+4))\n",
        "ctty-7",
    );
    let init = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    nix::unistd::write(&master, b"exit\n").unwrap();
    assert!(common::wait_until(10, || tong.state(&id)["status"] == "stopped"));
    tong.ok(&["delete", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(init));
}

#[test]
fn exec_with_a_tty_sends_its_own_terminal() {
    if !root_or_skip("exec_with_a_tty_sends_its_own_terminal") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "60"]));
    let id = unique_id("tty-exec");
    tong.run_detached(&bundle, &id);
    let console = ConsoleSocket::new();
    let (master, name) = std::thread::scope(|s| {
        let r = s.spawn(|| console.receive());
        tong.ok(&[
            "exec",
            "-d",
            "--tty",
            "--console-socket",
            console.path(),
            &id,
            "sh",
        ]);
        r.join().unwrap()
    });
    assert!(name.starts_with("/dev/pts/"), "{name:?}");
    let out = converse(&master, "hostname; tty\n", "/dev/pts/");
    assert!(out.contains("tong-test"), "the container's hostname: {out}");
    // The same, as podman calls it: --process FILE with terminal true.
    let process = serde_json::json!({
        "terminal": true, "args": ["sh", "-c", "echo from-process-file; sleep 1"],
        "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}
    });
    let file = bundle.path().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let (master2, _) = std::thread::scope(|s| {
        let r = s.spawn(|| console.receive());
        tong.ok(&[
            "exec",
            "--process",
            file.to_str().unwrap(),
            "--detach",
            "--console-socket",
            console.path(),
            &id,
        ]);
        r.join().unwrap()
    });
    converse(&master2, "", "from-process-file");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_terminal_without_a_console_socket_is_a_clear_error() {
    if !root_or_skip("a_terminal_without_a_console_socket_is_a_clear_error") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&terminal_config(&["sh"]));
    let id = unique_id("tty-none");
    let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("--console-socket"), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);
    let err = tong.fails(&[
        "create",
        "--console-socket",
        "/nonexistent/console.sock",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains("cannot connect to the console socket"),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
    // And the other way round: a console socket for a process without a terminal.
    let plain = Bundle::new(&config(&["true"]));
    let console = ConsoleSocket::new();
    let err = tong.fails(&[
        "create",
        "--console-socket",
        console.path(),
        "--bundle",
        plain.path().to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("process.terminal is false"), "{err}");
    tong.assert_clean(&id, Some(&plain), None);
    // Detached, nobody stays to relay the terminal: the error says what works instead.
    let err = tong.fails(&[
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains("--console-socket") && err.contains("foreground"),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
    let running = Bundle::new(&config(&["sleep", "60"]));
    tong.run_detached(&running, &id);
    let err = tong.fails(&["exec", "-d", "-t", &id, "true"]);
    assert!(
        err.contains("--console-socket") && err.contains("foreground"),
        "{err}"
    );
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&running), None);
}

/// The test's own terminal, as a user's shell has one: tong runs with the slave as its
/// stdio and controlling terminal; the test types on the master and reads from it.
struct UserTerminal {
    master: OwnedFd,
    slave: OwnedFd,
    /// The slave's mode before tong ran (cooked).
    cooked: Termios,
    /// Everything read from the master so far.
    seen: String,
}

impl UserTerminal {
    fn new(rows: u16, cols: u16) -> UserTerminal {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).unwrap();
        let cooked = tcgetattr(&pty.slave).unwrap();
        assert!(cooked
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO));
        UserTerminal {
            master: pty.master,
            slave: pty.slave,
            cooked,
            seen: String::new(),
        }
    }

    /// Starts `cmd` in a new session whose controlling terminal is ours.
    fn spawn(&self, mut cmd: Command) -> Child {
        let stdio = || Stdio::from(self.slave.try_clone().unwrap());
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn type_text(&self, text: &str) {
        nix::unistd::write(&self.master, text.as_bytes()).unwrap();
    }

    /// Reads until `expect` has shown up (10 s at most); returns everything seen.
    fn read_until(&mut self, expect: &str) -> &str {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !self.seen.contains(expect) {
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one live pollfd.
            if unsafe { libc::poll(&raw mut pfd, 1, 200) } <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        assert!(
            self.seen.contains(expect),
            "expected {expect:?} on the terminal, got {:?}",
            self.seen
        );
        &self.seen
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a pointer to a local; the kernel sends SIGWINCH to the
        // terminal's foreground process group (tong).
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    fn is_raw(&self) -> bool {
        !tcgetattr(&self.slave)
            .unwrap()
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
    }

    /// The terminal is back in the mode it had before tong ran.
    fn assert_restored(&self) {
        let now = tcgetattr(&self.slave).unwrap();
        assert_eq!(now.local_flags, self.cooked.local_flags);
        assert_eq!(now.input_flags, self.cooked.input_flags);
        assert_eq!(now.output_flags, self.cooked.output_flags);
        assert_eq!(now.control_flags, self.cooked.control_flags);
    }
}

/// Waits for `child` (30 s at most; killed and failed after that).
fn wait_for(mut child: Child, term: &UserTerminal) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tong did not exit; the terminal showed {:?}", term.seen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the container's shell does on the relayed terminal: says which pty it has and its
/// size, reads a line, shows the size again (changed meanwhile), and exits 7.
const CONVERSATION: &str = "tty; stty size; read x; echo got-$x-$((1+1)); stty size; exit 7";

/// Plays [`CONVERSATION`] with tong on the user's terminal and checks it all went through.
fn converse_on_the_user_terminal(term: &mut UserTerminal, tong: Child) {
    let seen = term.read_until("33 111").to_string();
    assert!(seen.contains("/dev/pts/"), "the container's tty: {seen:?}");
    assert!(
        term.is_raw(),
        "tong sets the user's terminal raw while relaying"
    );
    // SIGWINCH reaches tong before the line does: the shell then sees the new size.
    term.resize(44, 99);
    term.type_text("hello\n");
    term.read_until("got-hello-2");
    term.read_until("44 99");
    let status = wait_for(tong, term);
    assert_eq!(
        status.code(),
        Some(7),
        "tong exits with the container's code"
    );
    term.assert_restored();
}

#[test]
fn a_foreground_run_relays_the_terminal() {
    if !root_or_skip("a_foreground_run_relays_the_terminal") {
        return;
    }
    for extra in [&[][..], &["--init"][..]] {
        let tong = Tong::new();
        let bundle = Bundle::new(&terminal_config(&["sh", "-c", CONVERSATION]));
        let id = unique_id("tty-run");
        let mut term = UserTerminal::new(33, 111);
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", bundle.path().to_str().unwrap(), &id]);
        let child = term.spawn(tong.command(&args));
        converse_on_the_user_terminal(&mut term, child);
        tong.assert_clean(&id, Some(&bundle), None);
    }
}

#[test]
fn a_foreground_exec_with_a_tty_relays_the_terminal() {
    if !root_or_skip("a_foreground_exec_with_a_tty_relays_the_terminal") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "60"]));
    let id = unique_id("tty-exec-fg");
    tong.run_detached(&bundle, &id);
    let mut term = UserTerminal::new(33, 111);
    let child = term.spawn(tong.command(&["exec", "-t", &id, "sh", "-c", CONVERSATION]));
    converse_on_the_user_terminal(&mut term, child);
    assert_eq!(tong.state(&id)["status"], "running");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

/// A run that fails once the terminal is raw (a startContainer hook fails, after the
/// container took its pty) restores it and cleans up.
#[test]
fn a_failed_foreground_run_restores_the_terminal() {
    if !root_or_skip("a_failed_foreground_run_restores_the_terminal") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = terminal_config(&["true"]);
    cfg["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/false"}]});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("tty-fail");
    let mut term = UserTerminal::new(24, 80);
    let child =
        term.spawn(tong.command(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]));
    term.read_until("startContainer");
    let status = wait_for(child, &term);
    assert_eq!(status.code(), Some(1), "{:?}", term.seen);
    term.assert_restored();
    tong.assert_clean(&id, Some(&bundle), None);
}

/// stdin that is not a terminal and at its end at once: the output still flows until the
/// container exits, and its code is tong's.
#[test]
fn a_foreground_run_keeps_relaying_after_stdin_ends() {
    if !root_or_skip("a_foreground_run_keeps_relaying_after_stdin_ends") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&terminal_config(&[
        "sh",
        "-c",
        "sleep 0.5; test -t 1 && echo late-$((20+1)); exit 3",
    ]));
    let id = unique_id("tty-eof");
    let out = tong.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout {stdout:?}, stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("late-21"), "{stdout:?}");
    tong.assert_clean(&id, Some(&bundle), None);
}
