//! Running one process: finishing its woken system call, then user mode until it blocks,
//! ends, or its slice is over; and what each trap means.

use guest_kernel_core::process_tree::Pid;
use guest_kernel_core::signal::{Disposition, Signal};

use super::process::{Restart, State};
use super::signal_frame::Information;
use super::signals::{SEGV_ACCERR, SEGV_MAPERR, SI_KERNEL};
use super::space::Resolution;
use super::syscalls::{self, Flow};
use super::{Kernel, SLICE_NS};
use crate::arch::machine::{Machine, Trap};
use crate::console::kprintln;

/// The `syscall` instruction's length: a restarted call re-executes it.
const SYSCALL_LENGTH: u64 = 2;

/// The signal an exception means for user code (Linux's choices).
fn exception_signal(vector: u8) -> Signal {
    match vector {
        0 | 16 | 19 => Signal::ARITHMETIC,
        1 | 3 => Signal::TRAP,
        6 => Signal::ILLEGAL,
        17 => Signal::BUS,
        _ => Signal::SEGMENTATION,
    }
}

impl<M: Machine> Kernel<M> {
    /// Runs `pid` for up to one slice.
    pub(super) fn run(&mut self, pid: Pid) {
        if self.processes.get(&pid).is_none_or(|process| !process.state.is_ready()) {
            return;
        }
        self.running = Some(pid);
        self.run_slice(pid);
        self.running = None;
    }

    /// [`Kernel::run`]'s body, with `pid` marked running (so waking it queues nothing).
    fn run_slice(&mut self, pid: Pid) {
        // Two clock reads per trap: one as user mode stops, one as the kernel is done with
        // the trap. The second is also the next run's start, so the few checks before the
        // next entry (a signal to deliver, the timer already armed; on a slice's first run,
        // finishing a woken call) count as user time: a third read per system call would
        // cost more than they take.
        let mut since = self.machine.now_ns();
        let mut slice_end = since.saturating_add(SLICE_NS);
        // Other processes' deadlines change only when one of them blocks (never while this
        // one runs) or an interrupt wakes one; a sleeper this process wakes leaves at most
        // a deadline that fires early and is looked at again.
        let mut sleepers = self.earliest_deadline();
        loop {
            // A call that slept, or one a signal ends at once, finishes before user mode.
            if self.processes.get(&pid).is_some_and(|process| process.restart.is_some()) && !self.resume_call(pid) {
                return;
            }
            if !self.deliver_signals(pid) {
                return;
            }
            let deadline = sleepers.map_or(slice_end, |deadline| deadline.min(slice_end));
            self.arm(deadline);
            self.hand_over_extended(pid);
            let machine = self.machine;
            let Some(process) = self.processes.get_mut(&pid) else { return };
            let Some(space) = process.space.as_ref().map(|space| space.handle()) else { return };
            let trap = machine.enter_user(space, &mut process.context);
            let left = machine.now_ns();
            process.usage.user_ns += left.saturating_sub(since);
            if self.armed.is_some_and(|armed| armed <= left) {
                self.armed = None;
            }
            match trap {
                Trap::SystemCall => {
                    self.counters.system_calls += 1;
                    self.system_call(pid);
                }
                Trap::PageFault { address, access, present } => {
                    self.counters.page_faults += 1;
                    self.page_fault(pid, address, access, present);
                }
                Trap::Exception { vector, .. } => {
                    self.force_signal(
                        pid,
                        exception_signal(vector),
                        Information { code: SI_KERNEL, ..Information::default() },
                    );
                }
                Trap::Interrupt => {
                    self.counters.interrupts += 1;
                    self.poll_interrupts();
                    sleepers = self.earliest_deadline();
                }
            }
            let now = self.machine.now_ns();
            since = now;
            let Some(process) = self.processes.get_mut(&pid) else { return };
            process.usage.system_ns += now.saturating_sub(left);
            if !process.state.is_ready() {
                return;
            }
            if core::mem::take(&mut self.yield_requested) {
                return;
            }
            if now >= slice_end {
                if !self.ready.is_empty() {
                    self.counters.preemptions += 1;
                    self.ready.push_back(pid);
                    return;
                }
                slice_end = now.saturating_add(SLICE_NS);
            }
        }
    }

    /// Before `pid` enters user mode: the machine keeps the last process's vector registers
    /// live across its system calls and traps, and running another one replaces them, so
    /// that process (if it still exists) gets them saved into its context first.
    fn hand_over_extended(&mut self, pid: Pid) {
        let Some(previous) = self.extended_owner.replace(pid).filter(|&previous| previous != pid) else { return };
        if let Some(process) = self.processes.get_mut(&previous) {
            self.machine.save_extended(&mut process.context);
        }
    }

    /// A user page fault: resolved (demand paging, copy-on-write), or SIGSEGV; out of
    /// memory ends the biggest process and retries.
    fn page_fault(&mut self, pid: Pid, address: u64, access: crate::arch::machine::Access, present: bool) {
        let machine = self.machine;
        loop {
            let Some(process) = self.processes.get_mut(&pid) else { return };
            let Some(space) = process.space.as_mut() else { return };
            match space.resolve(machine, &mut self.frames, address, access) {
                Resolution::Mapped => {
                    process.usage.minor_faults += 1;
                    return;
                }
                Resolution::Refused => {
                    let code = if present { SEGV_ACCERR } else { SEGV_MAPERR };
                    self.force_signal(
                        pid,
                        Signal::SEGMENTATION,
                        Information { code, address, ..Information::default() },
                    );
                    return;
                }
                Resolution::OutOfMemory => {
                    if !self.kill_for_memory() || self.processes.get(&pid).is_none_or(|process| process.space.is_none())
                    {
                        return;
                    }
                }
                Resolution::Platform(error) => {
                    kprintln!("guest-kernel: process {pid}: page fault at {address:#x}: {error}; killed");
                    self.exit_process(
                        pid,
                        guest_kernel_core::signal::ExitStatus::Killed { signal: Signal::KILL, core_dumped: false },
                    );
                    return;
                }
            }
        }
    }

    /// A `syscall` from user mode.
    fn system_call(&mut self, pid: Pid) {
        let Some(process) = self.processes.get(&pid) else { return };
        let number = process.context.registers.rax;
        let flow = syscalls::dispatch(self, pid, number, None);
        self.finish_call(pid, number, flow);
    }

    /// A woken blocked call: interrupted by a signal (EINTR, or restarted after the
    /// handler with SA_RESTART), or run again. Returns whether the process goes on to
    /// user mode now.
    fn resume_call(&mut self, pid: Pid) -> bool {
        let Some(process) = self.processes.get_mut(&pid) else { return false };
        let Some(restart) = process.restart else { return true };
        if process.signals.has_deliverable() && !restart.timed_out && syscalls::interruptible(restart.number) {
            let deliverable = process.signals.pending().0 & !process.signals.blocked().0;
            let signal = Signal::new(u64::from(deliverable.trailing_zeros() + 1)).unwrap_or(Signal::KILL);
            let restartable = syscalls::restartable(restart.number)
                && matches!(process.signals.disposition(signal), Disposition::Handler { flags, .. } if flags & SA_RESTART != 0);
            if restartable {
                process.context.registers.rip = process.context.registers.rip.wrapping_sub(SYSCALL_LENGTH);
                process.context.registers.rax = restart.number;
            } else {
                process.context.registers.rax = syscalls::error(guest_kernel_core::linux::Errno::EINTR);
            }
            // The saved mask (if any) stays in `restart` for the signal frame.
            process.restart = Some(Restart { saved_mask: restart.saved_mask, ..Restart::default() })
                .filter(|_| restart.saved_mask.is_some());
            return true;
        }
        let flow = syscalls::dispatch(self, pid, restart.number, Some(restart));
        self.finish_call(pid, restart.number, flow);
        self.processes.get(&pid).is_some_and(|process| process.state.is_ready())
    }

    /// Carries out what a system call decided.
    fn finish_call(&mut self, pid: Pid, number: u64, flow: Flow) {
        match flow {
            Flow::Return(value) => {
                if let Some(process) = self.processes.get_mut(&pid) {
                    process.context.registers.rax = value;
                    if let Some(mask) = process.restart.take().and_then(|restart| restart.saved_mask) {
                        process.signals.restore_mask(mask);
                    }
                }
            }
            Flow::ReturnAndSignal(value, signal) => {
                if let Some(process) = self.processes.get_mut(&pid) {
                    process.context.registers.rax = value;
                    process.restart = None;
                }
                self.send_signal(pid, signal);
            }
            Flow::Registers => {
                if let Some(process) = self.processes.get_mut(&pid) {
                    process.restart = None;
                }
            }
            Flow::Block { sleep, timeout_ns, mask } => {
                // Only a call that sleeps needs the time (its timeout counts from here): a
                // clock read is not free, above all paravirtualized.
                let now = self.machine.now_ns();
                let Some(process) = self.processes.get_mut(&pid) else { return };
                let previous = process.restart.unwrap_or(Restart { number, since_ns: now, ..Restart::default() });
                let saved_mask = match (previous.saved_mask, mask) {
                    (Some(saved), _) => Some(saved),
                    (None, Some(_)) => Some(process.signals.blocked()),
                    (None, None) => None,
                };
                if let Some(mask) = mask {
                    process.signals.restore_mask(mask);
                }
                process.restart = Some(Restart {
                    number,
                    since_ns: previous.since_ns,
                    deadline_ns: timeout_ns.map(|timeout| previous.since_ns.saturating_add(timeout)),
                    timed_out: false,
                    saved_mask,
                });
                if process.signals.has_deliverable() && syscalls::interruptible(number) {
                    // A signal is already here: the call is interrupted at once (the run
                    // loop finishes it before the process returns to user mode).
                    process.state = State::Ready;
                } else {
                    process.state = State::Blocked(sleep);
                    self.ready.retain(|&ready| ready != pid);
                }
            }
            Flow::Exit(status) => self.exit_process(pid, status),
        }
        self.wake_file_waiters();
    }
}

/// `SA_RESTART`.
const SA_RESTART: u64 = linux_raw_sys::general::SA_RESTART as u64;
