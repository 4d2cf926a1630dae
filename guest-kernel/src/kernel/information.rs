//! What `/proc` shows of the kernel: [`ProcessInfo`] over the process table.

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use guest_kernel_core::files::{MemoryTotals, ProcessInfo, ProcessState, ProcessStatus};
use guest_kernel_core::process_tree::{Pid, ProcessTree};
use guest_kernel_core::signal::{Disposition, Signal};

use super::process::{Process, State};
use super::Kernel;
use crate::arch::machine::{Machine, PAGE_SIZE};

/// The kernel as `/proc` sees it during one system call. It borrows only the process
/// table and the tree, so a file call can hold it beside the file side and the caller's
/// memory.
pub struct Snapshot<'a> {
    processes: &'a BTreeMap<Pid, Process>,
    tree: &'a ProcessTree,
    uptime_ns: u64,
    idle_ns: u64,
    memory: MemoryTotals,
    /// The calling process's (virtual bytes, resident pages), measured before its space
    /// left its entry for the call.
    caller: Option<(Pid, u64, u64)>,
}

impl<'a> Snapshot<'a> {
    /// A view of `kernel`.
    pub fn new<M: Machine>(kernel: &'a Kernel<M>) -> Self {
        Self::of(&kernel.processes, &kernel.tree, kernel.totals(), kernel.machine.now_ns(), kernel.idle_ns)
    }

    /// A view of the table and tree, with the figures that change during a call taken
    /// before it.
    pub fn of(
        processes: &'a BTreeMap<Pid, Process>,
        tree: &'a ProcessTree,
        memory: MemoryTotals,
        uptime_ns: u64,
        idle_ns: u64,
    ) -> Self {
        Snapshot { processes, tree, uptime_ns, idle_ns, memory, caller: None }
    }
}

impl Snapshot<'_> {
    /// The same, with `pid`'s memory figures given (its space is out of the table).
    pub fn with_caller(self, pid: Pid, virtual_bytes: u64, resident_pages: u64) -> Self {
        Snapshot { caller: Some((pid, virtual_bytes, resident_pages)), ..self }
    }
}

impl<M: Machine> Kernel<M> {
    /// Memory totals for `/proc/meminfo` and `sysinfo`.
    pub(super) fn totals(&self) -> MemoryTotals {
        let free = (self.frames.limit().saturating_sub(self.frames.live()) as u64) * PAGE_SIZE;
        MemoryTotals { total_bytes: self.memory_bytes, free_bytes: free, available_bytes: free }
    }
}

impl ProcessInfo for Snapshot<'_> {
    fn pids(&self) -> Vec<Pid> {
        self.processes.keys().copied().collect()
    }

    fn status(&self, pid: Pid) -> Option<ProcessStatus> {
        let process = self.processes.get(&pid)?;
        let tree = self.tree;
        let (state, exit_code) = match process.state {
            State::Ready => (ProcessState::Running, 0),
            State::Blocked(_) => (ProcessState::Sleeping, 0),
            State::Stopped => (ProcessState::Stopped, 0),
            State::Zombie(status) => (ProcessState::Zombie, status.wait_status()),
        };
        let mut ignored = 0u64;
        let mut caught = 0u64;
        for number in 1..=64u64 {
            let Ok(signal) = Signal::new(number) else { continue };
            match process.signals.disposition(signal) {
                Disposition::Ignore => ignored |= 1 << (number - 1),
                Disposition::Handler { .. } => caught |= 1 << (number - 1),
                Disposition::Default => {}
            }
        }
        let (virtual_bytes, resident_pages) = match (self.caller, process.space.as_ref()) {
            (_, Some(space)) => (space.regions.mapped(), space.resident_pages() as u64),
            (Some((caller, virtual_bytes, resident_pages)), None) if caller == pid => (virtual_bytes, resident_pages),
            _ => (0, 0),
        };
        Some(ProcessStatus {
            pid,
            parent: tree.parent(pid).unwrap_or(0),
            group: tree.group(pid).unwrap_or(pid),
            session: tree.session(pid).unwrap_or(pid),
            name: process.name.clone(),
            state,
            uid: 0,
            gid: 0,
            user_ns: process.usage.user_ns,
            system_ns: process.usage.system_ns,
            children_user_ns: process.usage.children_user_ns,
            children_system_ns: process.usage.children_system_ns,
            start_ns: process.usage.start_ns,
            virtual_bytes,
            resident_pages,
            minor_faults: process.usage.minor_faults,
            pending: process.signals.pending().0,
            blocked: process.signals.blocked().0,
            ignored,
            caught,
            exit_code,
        })
    }

    fn command_line(&self, pid: Pid) -> Vec<u8> {
        self.processes
            .get(&pid)
            .filter(|process| !matches!(process.state, State::Zombie(_)))
            .map(|process| process.command_line.clone())
            .unwrap_or_default()
    }

    fn uptime_ns(&self) -> u64 {
        self.uptime_ns
    }

    fn idle_ns(&self) -> u64 {
        self.idle_ns
    }

    fn memory(&self) -> MemoryTotals {
        self.memory
    }
}
