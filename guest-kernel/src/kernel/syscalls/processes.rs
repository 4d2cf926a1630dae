//! Process system calls: identity, `fork`/`clone`/`vfork`, `execve`, `exit`, `wait4`,
//! process groups and sessions, and the per-process odds and ends (`arch_prctl`,
//! `prctl`, `set_tid_address`).

extern crate alloc;

use alloc::vec::Vec;

use guest_kernel_core::exec::stack::MAX_STRING;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::process_tree::{Selector, Waited, INIT};
use guest_kernel_core::signal::{ExitStatus, Signal};
use guest_kernel_core::user_memory::{read_path, read_string_array, write_value, UserMemory};
use linux_raw_sys::general as uapi;
use linux_raw_sys::prctl;

use super::{error, Call, Flow};
use crate::arch::machine::{Machine, USER_LIMIT};
use crate::kernel::exec::ARGUMENTS_MAX;
use crate::kernel::lifecycle::CloneRequest;
use crate::kernel::process::Sleep;
use crate::kernel::Kernel;

pub fn getpid<M: Machine>(_kernel: &mut Kernel<M>, call: &Call) -> Flow {
    Flow::Return(u64::from(call.pid))
}

pub fn getppid<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    Flow::Return(u64::from(kernel.tree.parent(call.pid).unwrap_or(0)))
}

pub fn sched_yield<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    // Go to the back of the queue: whoever is ready runs first.
    if !kernel.ready.is_empty() {
        kernel.ready.push_back(call.pid);
        kernel.yield_requested = true;
    }
    Flow::Return(0)
}

/// `clone` flags this kernel supports: every `fork`-like use (libc's `fork`, `vfork`,
/// `posix_spawn`). Threads (`CLONE_THREAD`, shared files or handlers) are refused.
const SUPPORTED: u64 = (uapi::CSIGNAL
    | uapi::CLONE_VM
    | uapi::CLONE_VFORK
    | uapi::CLONE_SETTLS
    | uapi::CLONE_PARENT_SETTID
    | uapi::CLONE_CHILD_SETTID
    | uapi::CLONE_CHILD_CLEARTID) as u64;

fn new_child<M: Machine>(kernel: &mut Kernel<M>, call: &Call, request: CloneRequest) -> Flow {
    let result = kernel.fork(call.pid, &request).map(u64::from);
    if let (Ok(child), true) = (result, request.vfork) {
        // The parent sleeps until the child lets it go; then it returns the child's pid.
        if let Some(process) = kernel.processes.get_mut(&call.pid) {
            process.context.registers.rax = child;
        }
        return Flow::Block { sleep: Sleep::Vfork(child as u32), timeout_ns: None, mask: None };
    }
    result.into()
}

/// `clone(flags, stack, parent_tid, child_tid, tls)`.
pub fn clone<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    // A woken vfork parent: its child is gone or runs another program.
    if let Some(flow) = vfork_finished(kernel, call) {
        return flow;
    }
    let [flags, stack, parent_tid, child_tid, tls, _] = call.arguments;
    if flags & !SUPPORTED != 0 {
        return Flow::Return(error(Errno::EINVAL));
    }
    let exit_signal = flags & u64::from(uapi::CSIGNAL);
    if exit_signal != 0 && exit_signal != u64::from(uapi::SIGCHLD) {
        return Flow::Return(error(Errno::EINVAL));
    }
    let vm = flags & u64::from(uapi::CLONE_VM) != 0;
    let vfork = flags & u64::from(uapi::CLONE_VFORK) != 0;
    // A shared address space is only honoured as vfork's: the parent does not run until
    // the child is done with it, so a copy behaves the same for what vfork allows.
    if vm && !vfork {
        return Flow::Return(error(Errno::EINVAL));
    }
    if stack >= USER_LIMIT {
        return Flow::Return(error(Errno::EINVAL));
    }
    let flag = |bit: u32| flags & u64::from(bit) != 0;
    let request = CloneRequest {
        vfork,
        stack,
        tls: flag(uapi::CLONE_SETTLS).then_some(tls),
        parent_tid: flag(uapi::CLONE_PARENT_SETTID).then_some(parent_tid),
        child_tid: flag(uapi::CLONE_CHILD_SETTID).then_some(child_tid),
        clear_child_tid: flag(uapi::CLONE_CHILD_CLEARTID).then_some(child_tid),
    };
    new_child(kernel, call, request)
}

pub fn fork<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    new_child(kernel, call, CloneRequest::default())
}

pub fn vfork<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    if let Some(flow) = vfork_finished(kernel, call) {
        return flow;
    }
    new_child(kernel, call, CloneRequest { vfork: true, ..CloneRequest::default() })
}

/// The second run of a vfork parent's call: return the child's pid (kept in RAX).
fn vfork_finished<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Option<Flow> {
    call.restart?;
    let child = kernel.processes.get(&call.pid)?.context.registers.rax;
    let still_borrowed =
        kernel.processes.get(&(child as u32)).is_some_and(|process| process.vfork_parent == Some(call.pid));
    if still_borrowed {
        return Some(Flow::Block { sleep: Sleep::Vfork(child as u32), timeout_ns: None, mask: None });
    }
    Some(Flow::Return(child))
}

/// `execve(path, argv, envp)`.
pub fn execve<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [path, arguments, environment, ..] = call.arguments;
    let read = kernel.with_memory(call.pid, |memory| {
        let path = read_path(memory, path)?;
        let arguments = if arguments == 0 { Vec::new() } else { read_string_array(memory, arguments, ARGUMENTS_MAX)? };
        let environment =
            if environment == 0 { Vec::new() } else { read_string_array(memory, environment, ARGUMENTS_MAX)? };
        Ok((path, arguments, environment))
    });
    let (path, arguments, environment) = match read {
        Ok(strings) => strings,
        Err(errno) => return Flow::Return(error(errno)),
    };
    if arguments.iter().chain(&environment).any(|string| string.len() >= MAX_STRING) {
        return Flow::Return(error(Errno::E2BIG));
    }
    match kernel.execute(call.pid, &path, &arguments, &environment) {
        Ok(()) => Flow::Registers,
        Err(errno) => Flow::Return(error(errno)),
    }
}

/// `exit(code)` and `exit_group(code)` (one thread per process: the same).
pub fn exit<M: Machine>(_kernel: &mut Kernel<M>, call: &Call) -> Flow {
    Flow::Exit(ExitStatus::Exited(call.arguments[0] as u8))
}

/// `wait4(pid, wstatus, options, rusage)`.
pub fn wait4<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [pid, status_address, options, usage_address, ..] = call.arguments;
    let known = u64::from(uapi::WNOHANG | uapi::WUNTRACED | uapi::WCONTINUED | uapi::__WALL | uapi::__WCLONE);
    if options & !known != 0 {
        return Flow::Return(error(Errno::EINVAL));
    }
    let pid = pid as i32 as i64;
    if pid == i64::from(i32::MIN) {
        return Flow::Return(error(Errno::ESRCH));
    }
    let selector = Selector::new(&kernel.tree, call.pid, pid);
    let waited = match kernel.tree.wait(call.pid, selector) {
        Ok(waited) => waited,
        Err(errno) => return Flow::Return(error(errno)),
    };
    let (child, status) = match waited {
        Waited::NotYet if options & u64::from(uapi::WNOHANG) != 0 => return Flow::Return(0),
        Waited::NotYet => return Flow::Block { sleep: Sleep::Child, timeout_ns: None, mask: None },
        Waited::Reaped(child, status) => (child, status),
    };
    let reaped = kernel.processes.remove(&child);
    if let (Some(reaped), Some(parent)) = (&reaped, kernel.processes.get_mut(&call.pid)) {
        parent.usage.children_user_ns += reaped.usage.user_ns + reaped.usage.children_user_ns;
        parent.usage.children_system_ns += reaped.usage.system_ns + reaped.usage.children_system_ns;
    }
    let usage = reaped.map(|process| process.usage).unwrap_or_default();
    let written = kernel.with_memory(call.pid, |memory| {
        if status_address != 0 {
            memory.write(status_address, &status.wait_status().to_le_bytes())?;
        }
        if usage_address != 0 {
            let words = super::time::rusage_words(usage.user_ns, usage.system_ns, usage.minor_faults);
            memory.write(usage_address, zerocopy::IntoBytes::as_bytes(&words))?;
        }
        Ok(())
    });
    // The child is reaped either way (as on Linux, a bad status pointer loses it).
    match written {
        Ok(()) => Flow::Return(u64::from(child)),
        Err(errno) => Flow::Return(error(errno)),
    }
}

pub fn setpgid<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [pid, group, ..] = call.arguments;
    let (Ok(pid), Ok(group)) = (u32::try_from(pid as i64), u32::try_from(group as i64)) else {
        return Flow::Return(error(Errno::EINVAL));
    };
    kernel.tree.set_group(call.pid, pid, group).map(|()| 0).into()
}

pub fn getpgid<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let pid = call.arguments[0] as u32;
    let pid = if pid == 0 { call.pid } else { pid };
    kernel.tree.group(pid).map(u64::from).ok_or(Errno::ESRCH).into()
}

pub fn getpgrp<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    kernel.tree.group(call.pid).map(u64::from).ok_or(Errno::ESRCH).into()
}

pub fn setsid<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    kernel.tree.new_session(call.pid).map(u64::from).into()
}

pub fn getsid<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let pid = call.arguments[0] as u32;
    let pid = if pid == 0 { call.pid } else { pid };
    kernel.tree.session(pid).map(u64::from).ok_or(Errno::ESRCH).into()
}

pub fn set_tid_address<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    if let Some(process) = kernel.processes.get_mut(&call.pid) {
        process.clear_child_tid = call.arguments[0];
    }
    Flow::Return(u64::from(call.pid))
}

/// `arch_prctl`'s "read the FS base" (linux-raw-sys names only the setter).
const ARCH_GET_FS: u32 = uapi::ARCH_SET_FS + 1;

/// `arch_prctl(ARCH_SET_FS | ARCH_GET_FS, ...)`: the FS base is the thread pointer.
pub fn arch_prctl<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [code, address, ..] = call.arguments;
    match u32::try_from(code) {
        Ok(uapi::ARCH_SET_FS) => {
            // A non-canonical base would fault the platform's restore: refuse it here.
            if address >= USER_LIMIT {
                return Flow::Return(error(Errno::EPERM));
            }
            if let Some(process) = kernel.processes.get_mut(&call.pid) {
                process.context.registers.fs_base = address;
            }
            Flow::Return(0)
        }
        Ok(ARCH_GET_FS) => {
            let base = kernel.processes.get(&call.pid).map_or(0, |process| process.context.registers.fs_base);
            kernel.with_memory(call.pid, |memory| write_value(memory, address, &base)).map(|()| 0).into()
        }
        _ => Flow::Return(error(Errno::EINVAL)),
    }
}

/// `prctl`: the process name (`PR_SET_NAME`, `PR_GET_NAME`); the rest EINVAL.
pub fn prctl<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [option, address, ..] = call.arguments;
    match u32::try_from(option) {
        Ok(prctl::PR_SET_NAME) => {
            let name = kernel.with_memory(call.pid, |memory| {
                let mut name = [0u8; 16];
                memory.read(address, &mut name)?;
                Ok(name)
            });
            match name {
                Ok(name) => {
                    let length = name.iter().position(|&byte| byte == 0).unwrap_or(15).min(15);
                    if let Some(process) = kernel.processes.get_mut(&call.pid) {
                        process.name = name[..length].to_vec();
                    }
                    Flow::Return(0)
                }
                Err(errno) => Flow::Return(error(errno)),
            }
        }
        Ok(prctl::PR_GET_NAME) => {
            let mut name = [0u8; 16];
            if let Some(process) = kernel.processes.get(&call.pid) {
                let length = process.name.len().min(15);
                name[..length].copy_from_slice(&process.name[..length]);
            }
            kernel.with_memory(call.pid, |memory| memory.write(address, &name)).map(|()| 0).into()
        }
        _ => Flow::Return(error(Errno::EINVAL)),
    }
}

/// Whether `pid` exists to be signalled (a zombie does, until reaped: the signal is then
/// discarded, as on Linux).
pub fn signal_target<M: Machine>(kernel: &Kernel<M>, pid: u32) -> bool {
    kernel.processes.contains_key(&pid)
}

/// SIGKILL and SIGSTOP cannot be sent to init (as Linux protects it).
pub fn protected(pid: u32, signal: Signal) -> bool {
    pid == INIT && (signal == Signal::KILL || signal == Signal::STOP)
}
