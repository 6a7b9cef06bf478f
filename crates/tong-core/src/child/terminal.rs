//! The child side of `process.terminal` (see [`crate::terminal`]): once inside the
//! container's mount namespace (after the root filesystem is set up, or after joining
//! it for `exec`), it opens `/dev/ptmx` of the container's own devpts,
//! sends the master over the console socket with `SCM_RIGHTS` (the data bytes are the
//! slave's path, as runc sends them) and makes the slave its stdio; right before exec it
//! starts a new session and takes the slave as its controlling terminal. Stack buffers
//! and raw calls only.

use std::ffi::c_int;

use tong_abi::ChildError;

/// Opens a new pty in the current mount namespace's devpts, sends its master over
/// `socket` and closes both; returns the slave (close-on-exec).
pub(crate) fn open_and_send(socket: c_int, err: &mut ChildError) -> std::result::Result<c_int, ()> {
    // SAFETY: open(2) of fixed NUL-terminated paths.
    let mut master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        // SAFETY: as above; a devpts without the /dev/ptmx link.
        master = unsafe {
            libc::open(
                c"/dev/pts/ptmx".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
    }
    if master < 0 {
        err.os(&[b"open /dev/ptmx in the container (is devpts mounted at /dev/pts?)"]);
        return Err(());
    }
    let result = slave_of(master, err).and_then(|(slave, number)| {
        send_master(socket, master, number, err)
            .inspect_err(|()| {
                // SAFETY: our own descriptor.
                unsafe { libc::close(slave) };
            })
            .map(|()| slave)
    });
    // SAFETY: the engine holds its own copy of the master now; ours and the socket go.
    unsafe {
        libc::close(master);
        libc::close(socket);
    }
    result
}

/// Unlocks the pty and opens its slave; returns it with its number.
fn slave_of(master: c_int, err: &mut ChildError) -> std::result::Result<(c_int, u32), ()> {
    let unlock: c_int = 0;
    let mut number: u32 = 0;
    // SAFETY: ioctls on our master with pointers to locals.
    unsafe {
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) < 0 {
            err.os(&[b"unlock the pty (TIOCSPTLCK)"]);
            return Err(());
        }
        if libc::ioctl(master, libc::TIOCGPTN, &mut number) < 0 {
            err.os(&[b"pty number (TIOCGPTN)"]);
            return Err(());
        }
    }
    // SAFETY: opens the peer of our master without a path lookup.
    let slave = unsafe {
        libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        err.os(&[b"open the pty slave (TIOCGPTPEER)"]);
        return Err(());
    }
    Ok((slave, number))
}

/// Sends the master with SCM_RIGHTS; the data is "/dev/pts/N", as runc sends it.
fn send_master(
    socket: c_int,
    master: c_int,
    number: u32,
    err: &mut ChildError,
) -> std::result::Result<(), ()> {
    let mut name = [0u8; 32];
    let prefix = b"/dev/pts/";
    name[..prefix.len()].copy_from_slice(prefix);
    let len = prefix.len() + tong_sys::write_decimal(&mut name[prefix.len()..], u64::from(number));
    let mut iov = libc::iovec {
        iov_base: name.as_mut_ptr().cast(),
        iov_len: len,
    };
    // Room for one descriptor, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr over locals; CMSG_* compute offsets inside `control`, which is large
    // enough for CMSG_SPACE(sizeof(int)) (24 bytes on 64-bit) and suitably aligned.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
        libc::CMSG_DATA(cmsg)
            .cast::<c_int>()
            .write_unaligned(master);
        libc::sendmsg(socket, &raw const msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        err.os(&[b"send the pty master over the console socket"]);
        return Err(());
    }
    Ok(())
}

/// Right before exec: a new session whose controlling terminal is the pty
/// on stdin.
pub(crate) fn take_controlling(err: &mut ChildError) -> std::result::Result<(), ()> {
    // SAFETY: plain syscalls; stdin is the pty slave.
    unsafe {
        if libc::setsid() < 0 {
            err.os(&[b"setsid"]);
            return Err(());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            err.os(&[b"make the pty the controlling terminal (TIOCSCTTY)"]);
            return Err(());
        }
    }
    Ok(())
}
