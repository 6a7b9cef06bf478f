//! Device access on cgroup2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the container's cgroup, as runc, crun and youki do.
//!
//! The program is built from a [`Policy`] (the same one cgroup v1 gets as
//! `devices.allow`/`devices.deny` writes) and checks the exceptions in turn; the
//! first that matches decides, otherwise the default does. It is attached with
//! `BPF_F_ALLOW_MULTI` and not pinned: the kernel frees it with the cgroup. Updating
//! attaches the new program before detaching the old ones, so some filter is always
//! in force (while both are attached an access needs both to allow it).
//!
//! bpf(2) is called through `libc::syscall` with the few `union bpf_attr` layouts
//! needed, declared here (the program is a dozen instructions per rule; a BPF crate
//! would bring far more than it saves).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::devices::{Access, Kind, Policy};
use crate::{PluginError, PluginResult};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `BPF_DEVCG_DEV_*`: the device type in the low 16 bits of `access_type`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// The name the programs carry (visible in `bpftool prog`), at most 15 bytes.
pub const PROGRAM_NAME: &str = "tong_devices";

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg and src_reg, 4 bits each.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // w_dst &= imm
const ALU32_RSH_K: u8 = 0x74; // w_dst >>= imm
const ALU32_MOV_K: u8 = 0xb4; // w_dst = imm
const ALU32_MOV_X: u8 = 0xbc; // w_dst = w_src
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const JMP32_JNE_K: u8 = 0x56; // if w_dst != imm goto +off
const JMP32_JNE_X: u8 = 0x5e; // if w_dst != w_src goto +off
const JMP32_JEQ_K: u8 = 0x16; // if w_dst == imm goto +off
const EXIT: u8 = 0x95;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    // The bit-field order of dst_reg/src_reg follows the byte order.
    let regs = if cfg!(target_endian = "little") {
        dst | (src << 4)
    } else {
        (dst << 4) | src
    };
    Insn {
        code,
        regs,
        off,
        imm,
    }
}

/// The program enforcing `policy`. r1 holds `struct bpf_cgroup_dev_ctx { u32
/// access_type; u32 major; u32 minor; }`, kept in r6. Each exception's block loads
/// what it tests (w2 device type, w3 requested access, w4 major, w5 minor) itself: no
/// register lives from one block to the next, so the verifier meets one state at each
/// block. (Loading the values once in a prologue made it follow every way into a block
/// apart: runc's defaults took 0.23 ms to load instead of 0.13 ms.)
pub fn program(policy: &Policy) -> Vec<Insn> {
    let mut p = vec![insn(ALU64_MOV_X, R6, R1, 0, 0)];
    for rule in policy.rules() {
        let dev = match rule.kind {
            Kind::Block => DEV_BLOCK,
            Kind::Char => DEV_CHAR,
            Kind::All => unreachable!("a policy has no `a` exceptions"),
        };
        let mut block = vec![
            Plain(insn(LDX_MEM_W, R2, R6, 0, 0)),
            Plain(insn(ALU32_AND_K, R2, 0, 0, 0xffff)),
            Jump(insn(JMP32_JNE_K, R2, 0, 0, dev)),
        ];
        if let Some(major) = rule.major {
            block.push(Plain(insn(LDX_MEM_W, R4, R6, 4, 0)));
            block.push(Jump(insn(JMP32_JNE_K, R4, 0, 0, major as i32)));
        }
        if let Some(minor) = rule.minor {
            block.push(Plain(insn(LDX_MEM_W, R5, R6, 8, 0)));
            block.push(Jump(insn(JMP32_JNE_K, R5, 0, 0, minor as i32)));
        }
        if rule.access != Access::ALL {
            block.push(Plain(insn(LDX_MEM_W, R3, R6, 0, 0)));
            block.push(Plain(insn(ALU32_RSH_K, R3, 0, 0, 16)));
            block.push(Plain(insn(ALU32_MOV_X, R1, R3, 0, 0)));
            block.push(Plain(insn(
                ALU32_AND_K,
                R1,
                0,
                0,
                i32::from(rule.access.bits()),
            )));
            block.push(Jump(if rule.allow {
                // An allow exception must grant all of the requested access
                // (request & access == request), as the kernel's v1 check does.
                insn(JMP32_JNE_X, R1, R3, 0, 0)
            } else {
                // A deny exception denies any request it shares an access with.
                insn(JMP32_JEQ_K, R1, 0, 0, 0)
            }));
        }
        block.push(Plain(insn(ALU32_MOV_K, R0, 0, 0, i32::from(rule.allow))));
        block.push(Plain(insn(EXIT, 0, 0, 0, 0)));
        // A test that fails jumps to the next rule's block: the offset counts the
        // instructions left in this one (at most 16, so it fits).
        let len = block.len();
        for (i, step) in block.into_iter().enumerate() {
            p.push(match step {
                Jump(mut j) => {
                    j.off = (len - i - 1) as i16;
                    j
                }
                Plain(x) => x,
            });
        }
    }
    p.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(policy.default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

enum Step {
    Jump(Insn),
    Plain(Insn),
}
use Step::{Jump, Plain};

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2).
///
/// # Safety
/// `attr` must be the layout the kernel expects for `cmd`, and every pointer in it
/// must point to memory that is valid (and, for outputs, writable) for the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for the attr layout and its pointers; the size is
    // that of the struct passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<c_void>(),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this new descriptor, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Loads `insns` as a cgroup device program. On a verifier refusal the error carries
/// the verifier's last lines.
pub fn load(insns: &[Insn]) -> PluginResult<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    // SAFETY: a BPF_PROG_LOAD attr; insns and license outlive the call.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above; log is writable for log_size bytes during the call.
            let again = unsafe { bpf(BPF_PROG_LOAD, &mut attr) };
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            Err(PluginError::failed(format!(
                "the kernel refused the device filter program ({e}): {}",
                if again.is_ok() {
                    "accepted on a second try".to_owned()
                } else {
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                }
            )))
        }
        Err(e) => Err(PluginError::os(
            "load the device filter program (bpf BPF_PROG_LOAD)",
            e,
        )),
    }
}

/// The ids of the device programs attached to the cgroup `dir_fd` itself.
pub fn attached(dir_fd: &OwnedFd) -> PluginResult<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: dir_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        // SAFETY: a BPF_PROG_QUERY attr; ids is writable for prog_cnt entries.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // More than fit: the kernel said how many.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0; attr.prog_cnt as usize];
            }
            Err(e) => {
                return Err(PluginError::os(
                    "list the cgroup's device programs (bpf BPF_PROG_QUERY)",
                    e,
                ))
            }
        }
    }
}

/// A descriptor of the program with this id (`None`: it is gone).
pub fn program_by_id(id: u32) -> PluginResult<Option<OwnedFd>> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    // SAFETY: a BPF_PROG_GET_FD_BY_ID attr, no pointers.
    match unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) } {
        Ok(fd) => Ok(Some(owned(fd))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(PluginError::os(format!("open BPF program {id}"), e)),
    }
}

fn attach_attr(dir_fd: &OwnedFd, prog: &OwnedFd, flags: u32) -> AttachAttr {
    AttachAttr {
        target_fd: dir_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        ..AttachAttr::default()
    }
}

/// Makes `policy` the device filter of the cgroup2 directory `dir`: the new program
/// is attached first, then the ones attached before (the previous filter) detached.
pub fn set_device_filter(dir: &Path, policy: &Policy) -> PluginResult<()> {
    let open = std::fs::File::open(dir)
        .map_err(|e| PluginError::os(format!("open {}", dir.display()), e))?;
    let dir_fd = OwnedFd::from(open);
    let old = attached(&dir_fd)?;
    let prog = load(&program(policy))?;
    let mut attr = attach_attr(&dir_fd, &prog, BPF_F_ALLOW_MULTI);
    // SAFETY: a BPF_PROG_ATTACH attr, no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map_err(|e| {
        PluginError::os(
            format!(
                "attach the device filter to {} (bpf BPF_PROG_ATTACH)",
                dir.display()
            ),
            e,
        )
    })?;
    for id in old {
        let Some(old_prog) = program_by_id(id)? else {
            continue;
        };
        let mut attr = attach_attr(&dir_fd, &old_prog, 0);
        // SAFETY: a BPF_PROG_DETACH attr, no pointers.
        match unsafe { bpf(BPF_PROG_DETACH, &mut attr) } {
            Ok(_) => {}
            // Detached (or freed) meanwhile: nothing left to do.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(PluginError::os(
                    format!(
                        "detach the previous device filter {id} from {}",
                        dir.display()
                    ),
                    e,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` as the kernel would, for one access (a small interpreter of the
    /// instructions [`program`] emits), so the logic is testable without root.
    /// Stands for the context pointer in r1.
    const CTX: u32 = 0xc0de;

    fn run(prog: &[Insn], dev: i32, access: u8, major: u32, minor: u32) -> u32 {
        let ctx = [((u32::from(access)) << 16) | dev as u32, major, minor];
        let mut r = [0u32; 11];
        r[1] = CTX;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = if cfg!(target_endian = "little") {
                ((i.regs & 0xf) as usize, (i.regs >> 4) as usize)
            } else {
                ((i.regs >> 4) as usize, (i.regs & 0xf) as usize)
            };
            pc += 1;
            let jump = |cond: bool, pc: &mut usize| {
                if cond {
                    *pc = (*pc as isize + i.off as isize) as usize;
                }
            };
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(r[src], CTX, "loads only from the context");
                    r[dst] = ctx[i.off as usize / 4];
                }
                ALU32_AND_K => r[dst] &= i.imm as u32,
                ALU32_RSH_K => r[dst] >>= i.imm,
                ALU32_MOV_K => r[dst] = i.imm as u32,
                ALU32_MOV_X | ALU64_MOV_X => r[dst] = r[src],
                JMP32_JNE_K => jump(r[dst] != i.imm as u32, &mut pc),
                JMP32_JNE_X => jump(r[dst] != r[src], &mut pc),
                JMP32_JEQ_K => jump(r[dst] == i.imm as u32, &mut pc),
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn policy(rules: serde_json::Value) -> Policy {
        Policy::for_container(Some(&serde_json::from_value::<Vec<_>>(rules).unwrap())).unwrap()
    }

    const R: u8 = 2;
    const W: u8 = 4;
    const M: u8 = 1;

    #[test]
    fn translation_program_allow_list() {
        let prog = program(&policy(serde_json::json!([
            {"allow": true, "type": "c", "major": 10, "minor": 232, "access": "r"}
        ])));
        let run = |dev, acc, maj, min| run(&prog, dev, acc, maj, min);
        assert_eq!(run(DEV_CHAR, R | W, 1, 3), 1, "/dev/null");
        assert_eq!(run(DEV_CHAR, R | W, 136, 7), 1, "a pts");
        assert_eq!(run(DEV_CHAR, R | W, 1, 11), 0, "kmsg");
        assert_eq!(run(DEV_BLOCK, R, 7, 0), 0, "loop0");
        assert_eq!(run(DEV_BLOCK, M, 7, 0), 1, "mknod of anything");
        assert_eq!(run(DEV_CHAR, R, 10, 232), 1, "kvm, read as allowed");
        assert_eq!(run(DEV_CHAR, R | W, 10, 232), 0, "kvm, write not allowed");
        assert_eq!(run(DEV_BLOCK, R, 10, 232), 0, "type matters");
    }

    #[test]
    fn translation_program_deny_list() {
        // A privileged container with one device taken away.
        let prog = program(&policy(serde_json::json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 10, "minor": 232, "access": "w"}
        ])));
        assert_eq!(run(&prog, DEV_BLOCK, R | W, 7, 0), 1);
        assert_eq!(run(&prog, DEV_CHAR, R, 10, 232), 1);
        // Any overlap with a denied access is denied, as the kernel's v1 check does.
        assert_eq!(run(&prog, DEV_CHAR, R | W, 10, 232), 0);
    }

    #[test]
    fn real_kernel_accepts_every_program_shape() {
        if !tong_testkit::require_root("real_kernel_accepts_every_program_shape", "bpf(2)") {
            return;
        }
        for rules in [
            serde_json::json!([]),
            // Deny-list with partial accesses, wildcards of each kind.
            serde_json::json!([
                {"allow": true, "access": "rwm"},
                {"allow": false, "type": "c", "major": 10, "minor": 232, "access": "w"},
                {"allow": false, "type": "b", "major": 7, "access": "rm"},
                {"allow": false, "type": "c", "minor": 4_000_000_000_u32, "access": "r"}
            ]),
            serde_json::json!([
                {"allow": true, "type": "b", "access": "r"},
                {"allow": true, "type": "c", "major": 4_294_967_295_u32, "minor": 0}
            ]),
        ] {
            load(&program(&policy(rules))).unwrap();
        }
    }
}
