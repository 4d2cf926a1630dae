//! Signal system calls: dispositions, the mask, sending, waiting, and the return from a
//! handler.

extern crate alloc;

use alloc::vec::Vec;

use guest_kernel_core::linux::layouts::SignalAction;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::process_tree::Pid;
use guest_kernel_core::signal::{Disposition, MaskChange, Signal, SignalSet};
use guest_kernel_core::user_memory::{read_value, write_value};

use super::processes::{protected, signal_target};
use super::{error, Call, Flow};
use crate::arch::machine::Machine;
use crate::kernel::process::{Sleep, State};
use crate::kernel::signal_frame::{self, Information};
use crate::kernel::signals::SI_USER;
use crate::kernel::Kernel;

/// The size of the signal set Linux's x86-64 calls take.
const SET_BYTES: u64 = 8;

fn signal_number(number: u64) -> Result<Option<Signal>, Errno> {
    if number == 0 {
        return Ok(None);
    }
    Signal::new(number).map(Some)
}

/// `rt_sigaction(signal, act, oldact, sigsetsize)`.
pub fn rt_sigaction<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [number, new, old, size, ..] = call.arguments;
    let result = (|| {
        if size != SET_BYTES {
            return Err(Errno::EINVAL);
        }
        let signal = Signal::new(number)?;
        let requested = if new != 0 {
            let action: SignalAction = kernel.with_memory(call.pid, |memory| read_value(memory, new))?;
            Some(Disposition::from_user(action.handler, action.flags, action.restorer, SignalSet(action.mask)))
        } else {
            None
        };
        let process = kernel.processes.get_mut(&call.pid).ok_or(Errno::ESRCH)?;
        let previous = match requested {
            Some(disposition) => process.signals.set_disposition(signal, disposition)?,
            None => process.signals.disposition(signal),
        };
        if old != 0 {
            let (handler, flags, restorer, mask) = previous.to_user();
            let action = SignalAction { handler, flags, restorer, mask: mask.0 };
            kernel.with_memory(call.pid, |memory| write_value(memory, old, &action))?;
        }
        Ok(0)
    })();
    result.into()
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
pub fn rt_sigprocmask<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [how, new, old, size, ..] = call.arguments;
    let result = (|| {
        if size != SET_BYTES {
            return Err(Errno::EINVAL);
        }
        let requested = if new != 0 {
            let change = MaskChange::new(how)?;
            let set: u64 = kernel.with_memory(call.pid, |memory| read_value(memory, new))?;
            Some((change, SignalSet(set)))
        } else {
            None
        };
        let process = kernel.processes.get_mut(&call.pid).ok_or(Errno::ESRCH)?;
        let previous = match requested {
            Some((change, set)) => process.signals.change_mask(change, set),
            None => process.signals.blocked(),
        };
        if old != 0 {
            kernel.with_memory(call.pid, |memory| write_value(memory, old, &previous.0))?;
        }
        Ok(0)
    })();
    result.into()
}

/// `rt_sigpending(set, sigsetsize)`.
pub fn rt_sigpending<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, size, ..] = call.arguments;
    if size != SET_BYTES {
        return Flow::Return(error(Errno::EINVAL));
    }
    let pending = kernel.processes.get(&call.pid).map_or(0, |process| process.signals.pending().0);
    kernel.with_memory(call.pid, |memory| write_value(memory, address, &pending)).map(|()| 0).into()
}

/// `rt_sigreturn()`: back from a handler to the registers the frame holds.
pub fn rt_sigreturn<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let machine = kernel.machine;
    let Some(process) = kernel.processes.get_mut(&call.pid) else { return Flow::Return(error(Errno::ESRCH)) };
    let Some(space) = process.space.as_mut() else { return Flow::Return(error(Errno::ESRCH)) };
    let memory = crate::kernel::user_access::UserAccess { machine, space, frames: &mut kernel.frames };
    let mut context = (*process.context).clone();
    match signal_frame::restore(&memory, &mut context) {
        Ok(mask) => {
            *process.context = context;
            process.signals.restore_mask(mask);
            Flow::Registers
        }
        Err(_) => {
            // A frame that cannot be read: the process dies of SIGSEGV, as on Linux.
            kernel.force_signal(call.pid, Signal::SEGMENTATION, signal_frame::Information::default());
            Flow::Registers
        }
    }
}

/// `rt_sigsuspend(mask, sigsetsize)`: sleep with `mask` until a signal is delivered.
pub fn rt_sigsuspend<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, size, ..] = call.arguments;
    if size != SET_BYTES {
        return Flow::Return(error(Errno::EINVAL));
    }
    match kernel.with_memory(call.pid, |memory| read_value::<u64>(memory, address)) {
        Ok(mask) => Flow::Block { sleep: Sleep::Signal, timeout_ns: None, mask: Some(SignalSet(mask)) },
        Err(errno) => Flow::Return(error(errno)),
    }
}

/// `pause()`.
pub fn pause<M: Machine>(_kernel: &mut Kernel<M>, _call: &Call) -> Flow {
    Flow::Block { sleep: Sleep::Signal, timeout_ns: None, mask: None }
}

/// `sigaltstack`: no alternate stacks; reports "disabled" and refuses to set one.
pub fn sigaltstack<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [new, old, ..] = call.arguments;
    if old != 0 {
        // stack_t: ss_sp, ss_flags (SS_DISABLE = 2), ss_size.
        let mut disabled = [0u8; 24];
        disabled[8..12].copy_from_slice(&2u32.to_le_bytes());
        if let Err(errno) = kernel
            .with_memory(call.pid, |memory| guest_kernel_core::user_memory::UserMemory::write(memory, old, &disabled))
        {
            return Flow::Return(error(errno));
        }
    }
    if new != 0 {
        return Flow::Return(error(Errno::ENOMEM));
    }
    Flow::Return(0)
}

/// Sends `signal` (or only checks, for 0) from `sender` to each of `targets`; ESRCH if
/// there are none.
fn send_to<M: Machine>(kernel: &mut Kernel<M>, sender: Pid, targets: &[Pid], signal: Option<Signal>) -> Flow {
    if targets.is_empty() {
        return Flow::Return(error(Errno::ESRCH));
    }
    let mut sent = false;
    for &pid in targets {
        match signal {
            Some(signal) if !protected(pid, signal) => {
                let information = Information { code: SI_USER, pid: sender, ..Information::default() };
                kernel.send_signal_with(pid, signal, information);
                sent = true;
            }
            Some(_) => {}
            None => sent = true,
        }
    }
    if sent {
        Flow::Return(0)
    } else {
        Flow::Return(error(Errno::EPERM))
    }
}

/// `kill(pid, signal)`: a process, the caller's group (0), every process (-1), or a group
/// (-pgid).
pub fn kill<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [pid, number, ..] = call.arguments;
    let signal = match signal_number(number) {
        Ok(signal) => signal,
        Err(errno) => return Flow::Return(error(errno)),
    };
    let pid = pid as i32;
    let targets: Vec<Pid> = match pid {
        0 => kernel.tree.group(call.pid).map(|group| kernel.tree.members(group).collect()).unwrap_or_default(),
        -1 => kernel
            .processes
            .iter()
            .filter(|(&other, process)| other != 1 && other != call.pid && !matches!(process.state, State::Zombie(_)))
            .map(|(&other, _)| other)
            .collect(),
        i32::MIN => Vec::new(),
        pid if pid < 0 => kernel.tree.members(pid.unsigned_abs()).collect(),
        pid => [pid as Pid].into_iter().filter(|&pid| signal_target(kernel, pid)).collect(),
    };
    send_to(kernel, call.pid, &targets, signal)
}

/// `tkill(tid, signal)`: one thread per process, so a process.
pub fn tkill<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [tid, number, ..] = call.arguments;
    let signal = match signal_number(number) {
        Ok(signal) => signal,
        Err(errno) => return Flow::Return(error(errno)),
    };
    let tid = tid as i32;
    if tid <= 0 {
        return Flow::Return(error(Errno::EINVAL));
    }
    let targets: Vec<Pid> = [tid as Pid].into_iter().filter(|&pid| signal_target(kernel, pid)).collect();
    send_to(kernel, call.pid, &targets, signal)
}

/// `tgkill(tgid, tid, signal)`.
pub fn tgkill<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [group, tid, number, ..] = call.arguments;
    if group as i32 <= 0 || group != tid {
        return Flow::Return(error(if group as i32 <= 0 { Errno::EINVAL } else { Errno::ESRCH }));
    }
    tkill(kernel, &Call { arguments: [tid, number, 0, 0, 0, 0], ..*call })
}
