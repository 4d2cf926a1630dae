//! Signals, sent and delivered: waking a sleeping receiver, forcing a fault's signal, and
//! at the return to user mode running a handler, ending or stopping the process.

use guest_kernel_core::process_tree::Pid;
use guest_kernel_core::signal::{Delivery, Disposition, ExitStatus, Signal};

use super::process::State;
use super::signal_frame::{self, Information};
use super::user_access::UserAccess;
use super::Kernel;
use crate::arch::machine::Machine;

/// `si_code` of a signal sent by `kill`.
pub const SI_USER: i32 = 0;
/// `si_code` of a signal the kernel sends (the console's Ctrl-C).
pub const SI_KERNEL: i32 = 0x80;
/// `si_code`s of SIGCHLD: the child exited, was killed, or dumped core.
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;
/// `si_code` of SIGSEGV for an address nothing is mapped at, and for a forbidden access.
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;

impl<M: Machine> Kernel<M> {
    /// Sends `signal` to `pid`: pending unless discarded, and a sleeping or stopped
    /// receiver is woken to take it.
    pub(super) fn send_signal(&mut self, pid: Pid, signal: Signal) {
        self.send_signal_with(pid, signal, Information { code: SI_KERNEL, ..Information::default() });
    }

    /// Sends `signal` with what its handler's `siginfo` will say.
    pub(super) fn send_signal_with(&mut self, pid: Pid, signal: Signal, information: Information) {
        let Some(process) = self.processes.get_mut(&pid) else { return };
        if matches!(process.state, State::Zombie(_)) {
            return;
        }
        let pending = process.signals.send(signal);
        if pending {
            process.signal_information.entry(signal.number()).or_insert(information);
        }
        let wake = match process.state {
            State::Stopped => signal == Signal::CONTINUE || signal == Signal::KILL,
            State::Blocked(_) => pending && process.signals.has_deliverable(),
            _ => false,
        };
        if signal == Signal::CONTINUE && process.state == State::Stopped {
            process.state = State::Ready;
        }
        if wake {
            self.make_ready(pid);
        }
    }

    /// A fault's signal (SIGSEGV, SIGILL, SIGFPE, ...): if the process blocks or ignores
    /// it, it cannot be ignored — the default action (death) is restored, as Linux does.
    pub(super) fn force_signal(&mut self, pid: Pid, signal: Signal, information: Information) {
        let Some(process) = self.processes.get_mut(&pid) else { return };
        let blocked = process.signals.blocked().contains(signal);
        let ignored = process.signals.disposition(signal) == Disposition::Ignore;
        if blocked || ignored {
            let _ = process.signals.set_disposition(signal, Disposition::Default);
            let mask = process.signals.blocked().without(signal);
            process.signals.restore_mask(mask);
        }
        process.signal_information.insert(signal.number(), information);
        self.send_signal_with(pid, signal, information);
    }

    /// Delivers `pid`'s deliverable signals before it returns to user mode. Returns
    /// whether it still runs (not ended or stopped).
    pub(super) fn deliver_signals(&mut self, pid: Pid) -> bool {
        loop {
            let Some(process) = self.processes.get_mut(&pid) else { return false };
            if !process.state.is_ready() {
                return false;
            }
            let saved_mask =
                process.restart.and_then(|restart| restart.saved_mask).unwrap_or(process.signals.blocked());
            let Some(delivery) = process.signals.next_delivery() else {
                // A mask swapped for a sleeping call comes back once it is over.
                if let Some(mask) = process.restart.take().and_then(|restart| restart.saved_mask) {
                    process.signals.restore_mask(mask);
                }
                return true;
            };
            match delivery {
                Delivery::Handle { signal, handler, restorer, mask_during, .. } => {
                    let information = process.signal_information.remove(&signal.number()).unwrap_or_default();
                    process.restart = None;
                    let machine = self.machine;
                    let Some(space) = process.space.as_mut() else { return false };
                    let mut memory = UserAccess { machine, space, frames: &mut self.frames };
                    // The frame holds the vector registers as user mode left them.
                    machine.save_extended(&mut process.context);
                    let written = signal_frame::deliver(
                        &mut memory,
                        &mut process.context,
                        signal,
                        handler,
                        restorer,
                        saved_mask,
                        &information,
                    );
                    if written.is_err() {
                        // No room for the frame: the process dies of SIGSEGV, as on Linux.
                        self.exit_process(pid, ExitStatus::Killed { signal: Signal::SEGMENTATION, core_dumped: true });
                        return false;
                    }
                    process.signals.restore_mask(mask_during);
                }
                Delivery::Terminate { signal, core_dumped } => {
                    process.signal_information.clear();
                    self.exit_process(pid, ExitStatus::Killed { signal, core_dumped });
                    return false;
                }
                Delivery::Stop(_) => {
                    if let Some(mask) = process.restart.take().and_then(|restart| restart.saved_mask) {
                        process.signals.restore_mask(mask);
                    }
                    process.state = State::Stopped;
                    self.ready.retain(|&ready| ready != pid);
                    return false;
                }
            }
        }
    }
}
