//! File system calls: the core's file side does them ([`guest_kernel_core::files`]);
//! this gives it the caller — its files, its memory and a view of the processes for
//! `/proc` — and turns its outcome into the run loop's.

use guest_kernel_core::files::{self, Caller, Outcome};
use guest_kernel_core::linux::Errno;

use super::{error, Call, Flow};
use crate::arch::machine::Machine;
use crate::kernel::information::Snapshot;
use crate::kernel::process::Sleep;
use crate::kernel::user_access::UserAccess;
use crate::kernel::Kernel;

/// Runs file system call `number`, or `None` if it is not one.
pub fn dispatch<M: Machine>(kernel: &mut Kernel<M>, call: &Call, number: u64) -> Option<Flow> {
    let machine = kernel.machine;
    let now = kernel.wallclock_ns();
    kernel.files.set_now(now);
    let totals = kernel.totals();
    let uptime = machine.now_ns();
    let process = kernel.processes.get_mut(&call.pid)?;
    // The caller's files and memory leave its entry for the call, so the view of the
    // process table that `/proc` needs can be borrowed beside them.
    let (Some(mut process_files), Some(mut space)) = (process.files.take(), process.space.take()) else {
        return Some(Flow::Return(error(Errno::ESRCH)));
    };
    let result = {
        let snapshot = Snapshot::of(&kernel.processes, &kernel.tree, totals, uptime, kernel.idle_ns).with_caller(
            call.pid,
            space.regions.mapped(),
            space.resident_pages() as u64,
        );
        let mut memory = UserAccess { machine, space: &mut space, frames: &mut kernel.frames };
        let mut caller = Caller {
            pid: call.pid,
            process: &mut process_files,
            memory: &mut memory,
            processes: &snapshot,
            timed_out: call.timed_out(),
        };
        files::dispatch(&mut kernel.files, &mut caller, number, call.arguments)
    };
    if let Some(process) = kernel.processes.get_mut(&call.pid) {
        process.files = Some(process_files);
        process.space = Some(space);
    }
    let flow = match result? {
        Ok(Outcome::Done(value)) => Flow::Return(value),
        Ok(Outcome::Block(wait)) => {
            let timeout_ns = wait.timeout_ns;
            let mask = wait.signal_mask;
            Flow::Block { sleep: Sleep::Files(wait), timeout_ns, mask }
        }
        Ok(Outcome::FailAndSignal { error: errno, signal }) => Flow::ReturnAndSignal(error(errno), signal),
        Err(errno) => Flow::Return(error(errno)),
    };
    Some(flow)
}
