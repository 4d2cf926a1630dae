//! The kernel proper, generic over [`Machine`]: it boots (banner, the initramfs unpacked
//! into the file system, init started), then runs the run loop until init exits, whose
//! status is the machine's shutdown code.
//!
//! The run loop: pick a ready process, finish its blocked system call if it was woken,
//! deliver its signals, and enter user mode until it traps; handle the trap (a system
//! call, a fault, an interrupt) and go on with the same process until it blocks, exits or
//! its time slice ends. With nobody ready, idle until an interrupt. One kernel stack
//! serves everything: a system call that must wait leaves its process blocked and runs
//! again, from the same registers, when woken.

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use guest_kernel_core::command_line::CommandLine;
use guest_kernel_core::files::Files;
use guest_kernel_core::fs::initramfs;
use guest_kernel_core::fs::tree::FileSystem;
use guest_kernel_core::process_tree::{Pid, ProcessTree};

use crate::arch::machine::{Machine, PAGE_SIZE};
use crate::console::kprintln;
use frames::Frames;
use process::{Process, State};

mod boot;
mod console_sink;
mod exec;
mod frames;
mod information;
mod lifecycle;
mod process;
mod random;
mod run;
mod signal_frame;
mod signals;
mod space;
mod syscalls;
mod user_access;
mod vdso;

/// The kernel's version (its crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a process runs before another ready one gets the processor.
pub const SLICE_NS: u64 = 10_000_000;

/// The most processes at once (zombies included). ringfence gives a domain 64 address
/// spaces and the kernel keeps one; the native build keeps the same bound, so both
/// behave alike.
pub const PROCESS_LIMIT: usize = 60;

/// The most pipes at once.
pub const PIPE_LIMIT: usize = 256;

/// Everything the kernel knows.
pub struct Kernel<M: Machine + 'static> {
    machine: &'static M,
    frames: Frames,
    files: Files,
    tree: ProcessTree,
    processes: BTreeMap<Pid, Process>,
    /// Ready processes in the order they run.
    ready: VecDeque<Pid>,
    options: CommandLine,
    /// Unknown system calls by number (answered ENOSYS).
    unknown_calls: BTreeMap<u64, u64>,
    random: random::Random,
    /// The deadline the machine's timer is armed for.
    armed: Option<u64>,
    /// Nanoseconds spent idle.
    idle_ns: u64,
    /// Wallclock at boot, ns since 1970.
    boot_wallclock_ns: u64,
    /// Memory the machine gave the kernel, in bytes.
    memory_bytes: u64,
    /// init's exit status, once it exited: the shutdown code.
    finished: Option<u32>,
    /// The running process asked to give way (`sched_yield`).
    yield_requested: bool,
    /// What happened, for the verbose shutdown report.
    counters: Counters,
    /// The process in [`Kernel::run`], if any.
    running: Option<Pid>,
    /// The process that entered user mode last: the machine may hold its vector registers
    /// unsaved ([`Machine::save_extended`]).
    extended_owner: Option<Pid>,
    /// The vDSO every program gets (none if it could not be built at boot).
    vdso: Option<vdso::Vdso>,
}

/// Events the kernel counts for its verbose shutdown report. Each system call and each
/// user page fault is one trap out of user mode, so on ringfence the hypervisor's trace
/// (`cargo xtask run --trace`) shows the same numbers of bounces.
#[derive(Copy, Clone, Debug, Default)]
struct Counters {
    /// `syscall`s from user mode.
    system_calls: u64,
    /// Page faults from user mode, resolved or not.
    page_faults: u64,
    /// User runs an interrupt ended.
    interrupts: u64,
    /// Slices that ran out while another process was ready (which then went first).
    preemptions: u64,
    /// Processes created: init and every fork, vfork and clone.
    processes: u64,
}

/// Boots the kernel on `machine` and runs it until init exits; returns the shutdown code.
pub fn main<M: Machine>(machine: &'static M) -> u32 {
    crate::console::attach(machine);
    let mut kernel = match boot::boot(machine) {
        Ok(kernel) => kernel,
        Err(code) => return code,
    };
    while kernel.finished.is_none() {
        kernel.step();
    }
    kernel.shut_down()
}

impl<M: Machine> Kernel<M> {
    /// The kernel over an unpacked file system, with no process yet.
    fn new(
        machine: &'static M,
        fs: FileSystem,
        options: CommandLine,
        memory_bytes: u64,
        frame_limit: usize,
    ) -> Result<Self, guest_kernel_core::linux::Errno> {
        let files = Files::new(fs, Box::new(console_sink::ConsoleSink(machine)), PIPE_LIMIT)?;
        let boot_wallclock_ns = machine.wallclock_at_boot_ns().unwrap_or(0);
        let mut frames = Frames::new(frame_limit);
        let vdso = match vdso::Vdso::new(&mut frames, machine.clock_parameters(), boot_wallclock_ns) {
            Ok(vdso) => Some(vdso),
            Err(error) => {
                kprintln!("guest-kernel: no vDSO: {error}; programs read the clocks with system calls");
                None
            }
        };
        Ok(Kernel {
            machine,
            frames,
            files,
            tree: ProcessTree::new(PROCESS_LIMIT),
            processes: BTreeMap::new(),
            ready: VecDeque::new(),
            options,
            unknown_calls: BTreeMap::new(),
            random: random::Random::new(machine.now_ns() ^ boot_wallclock_ns),
            armed: None,
            idle_ns: 0,
            boot_wallclock_ns,
            memory_bytes,
            finished: None,
            yield_requested: false,
            counters: Counters::default(),
            running: None,
            extended_owner: None,
            vdso,
        })
    }

    /// Nanoseconds since 1970 now.
    fn wallclock_ns(&self) -> u64 {
        self.boot_wallclock_ns.saturating_add(self.machine.now_ns())
    }

    /// Makes `pid` ready (at the back of the queue) if it exists and is not already; the
    /// running process only becomes ready again (it goes on running).
    fn make_ready(&mut self, pid: Pid) {
        if let Some(process) = self.processes.get_mut(&pid) {
            process.state = State::Ready;
            if self.running != Some(pid) && !self.ready.contains(&pid) {
                self.ready.push_back(pid);
            }
        }
    }

    /// Arms the machine's timer for `deadline` unless it already is.
    fn arm(&mut self, deadline: u64) {
        if self.armed != Some(deadline) {
            self.machine.set_timer(deadline);
            self.armed = Some(deadline);
        }
    }

    /// The earliest deadline of a sleeping system call.
    fn earliest_deadline(&self) -> Option<u64> {
        self.processes
            .values()
            .filter(|process| matches!(process.state, State::Blocked(_)))
            .filter_map(|process| process.restart.and_then(|restart| restart.deadline_ns))
            .min()
    }

    /// One turn of the run loop.
    fn step(&mut self) {
        self.poll_interrupts();
        match self.ready.pop_front() {
            Some(pid) => self.run(pid),
            None => self.idle(),
        }
    }

    /// Nobody is ready: sleep until an interrupt (the next deadline, console input).
    fn idle(&mut self) {
        if let Some(deadline) = self.earliest_deadline() {
            self.arm(deadline);
        }
        let before = self.machine.now_ns();
        self.machine.idle();
        // The timer fired or input came: either way the armed deadline may be spent.
        if self.armed.is_some_and(|deadline| deadline <= self.machine.now_ns()) {
            self.armed = None;
        }
        self.idle_ns += self.machine.now_ns().saturating_sub(before);
    }

    /// Console input, and deadlines that passed: wake who they concern. And the vDSO's
    /// clock page follows the machine's clock (on ringfence it changes when the hypervisor
    /// updates its time record, which it does before it delivers an interrupt).
    fn poll_interrupts(&mut self) {
        if let Some(vdso) = self.vdso.as_mut() {
            vdso.refresh(self.machine, &mut self.frames, self.boot_wallclock_ns);
        }
        let mut input = [0u8; 128];
        loop {
            let count = self.machine.console_read(&mut input);
            if count == 0 {
                break;
            }
            let signals = self.files.console_input(&input[..count]);
            for signal in signals {
                let members: Vec<Pid> = self.tree.members(signal.group).collect();
                for pid in members {
                    self.send_signal(pid, signal.signal);
                }
            }
        }
        self.wake_file_waiters();
        let now = self.machine.now_ns();
        let expired: Vec<Pid> = self
            .processes
            .iter()
            .filter(|(_, process)| matches!(process.state, State::Blocked(_)))
            .filter(|(_, process)| {
                process.restart.and_then(|restart| restart.deadline_ns).is_some_and(|deadline| deadline <= now)
            })
            .map(|(&pid, _)| pid)
            .collect();
        for pid in expired {
            if let Some(restart) = self.processes.get_mut(&pid).and_then(|process| process.restart.as_mut()) {
                restart.timed_out = true;
            }
            self.make_ready(pid);
        }
    }

    /// Wakes every process sleeping on a file event that happened.
    fn wake_file_waiters(&mut self) {
        let events = self.files.take_events();
        if events.is_empty() {
            return;
        }
        let woken: Vec<Pid> = self
            .processes
            .iter()
            .filter(|(_, process)| match &process.state {
                State::Blocked(process::Sleep::Files(wait)) => wait.events.iter().any(|event| events.contains(event)),
                _ => false,
            })
            .map(|(&pid, _)| pid)
            .collect();
        for pid in woken {
            self.make_ready(pid);
        }
    }

    /// Pages the frames may use: what is left of `memory_bytes` after the kernel's own
    /// needs (`reserved` bytes: its image, heap structures, the file system).
    fn frame_limit(memory_bytes: u64, reserved: u64) -> usize {
        (memory_bytes.saturating_sub(reserved) / PAGE_SIZE) as usize
    }

    /// init exited: report and return the shutdown code.
    fn shut_down(&mut self) -> u32 {
        let code = self.finished.unwrap_or(1);
        if self.options.verbose {
            kprintln!(
                "guest-kernel: init exited ({code}); frames: {} live, {} at most, limit {}",
                self.frames.live(),
                self.frames.peak(),
                self.frames.limit()
            );
            let Counters { system_calls, page_faults, interrupts, preemptions, processes } = self.counters;
            kprintln!(
                "guest-kernel: {system_calls} system calls, {page_faults} page faults from user mode, {interrupts} \
                 interrupts, {preemptions} preemptions, {processes} processes created"
            );
            if self.unknown_calls.is_empty() {
                kprintln!("guest-kernel: no unknown system calls");
            }
            for (number, count) in &self.unknown_calls {
                kprintln!(
                    "guest-kernel: unknown system call {number} ({}): {count} time(s), answered ENOSYS",
                    syscalls::name(*number)
                );
            }
        }
        code
    }
}

/// The initramfs, unpacked into a new file system of `budget` bytes.
fn unpack(archive: &[u8], budget: u64) -> Result<FileSystem, initramfs::UnpackError> {
    let mut fs = FileSystem::new(budget);
    initramfs::unpack(&mut fs, archive)?;
    Ok(fs)
}
