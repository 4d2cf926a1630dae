//! What `/proc` shows of the kernel: [`ProcessInfo`] over the process table.

extern crate alloc;

use alloc::vec::Vec;

use guest_kernel_core::files::{MemoryTotals, ProcessInfo, ProcessState, ProcessStatus};
use guest_kernel_core::process_tree::Pid;
use guest_kernel_core::signal::{Disposition, Signal};

use super::process::State;
use super::Kernel;
use crate::arch::machine::{Machine, PAGE_SIZE};

/// The kernel as `/proc` sees it during one system call.
pub struct Snapshot<'a, M: Machine + 'static> {
    kernel: &'a Kernel<M>,
}

impl<'a, M: Machine> Snapshot<'a, M> {
    /// A view of `kernel`.
    pub fn new(kernel: &'a Kernel<M>) -> Self {
        Snapshot { kernel }
    }
}

impl<M: Machine> ProcessInfo for Snapshot<'_, M> {
    fn pids(&self) -> Vec<Pid> {
        self.kernel.processes.keys().copied().collect()
    }

    fn status(&self, pid: Pid) -> Option<ProcessStatus> {
        let process = self.kernel.processes.get(&pid)?;
        let tree = &self.kernel.tree;
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
        let (virtual_bytes, resident_pages) = process
            .space
            .as_ref()
            .map_or((0, 0), |space| (space.regions.mapped(), space.resident_pages() as u64));
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
        self.kernel
            .processes
            .get(&pid)
            .filter(|process| !matches!(process.state, State::Zombie(_)))
            .map(|process| process.command_line.clone())
            .unwrap_or_default()
    }

    fn uptime_ns(&self) -> u64 {
        self.kernel.machine.now_ns()
    }

    fn idle_ns(&self) -> u64 {
        self.kernel.idle_ns
    }

    fn memory(&self) -> MemoryTotals {
        let frames = &self.kernel.frames;
        let free = (frames.limit().saturating_sub(frames.live()) as u64) * PAGE_SIZE;
        MemoryTotals { total_bytes: self.kernel.memory_bytes, free_bytes: free, available_bytes: free }
    }
}
