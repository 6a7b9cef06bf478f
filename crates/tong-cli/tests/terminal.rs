//! `process.terminal` with `--console-socket`: the test is the engine. It listens on a
//! unix socket, receives the pty master with SCM_RIGHTS as containerd and podman do,
//! types a command into the container's terminal and reads the answer.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

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
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
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
}
