//! The errors SPEC.md documents for each hypercall (§6–§21): a fuzzed call may fail only
//! with one of these. The sets are per hypercall, not per sub-command, so they are the
//! union over sub-commands; the sequences check exact results where the call is known.

use super::Call;
use guest_rt::abi::hypercall::Hypercall;
use guest_rt::abi::Errno;

const E: Errno = Errno::EINVAL;
const F: Errno = Errno::EFAULT;

/// The errors `call` may return.
pub fn errors(call: &Call) -> &'static [Errno] {
    match call.hypercall() {
        // §11.1, §11.2, §11.3, §18.2, §11.6: argument checks only.
        Hypercall::SET_TRAP_TABLE => &[E, F],
        Hypercall::STACK_SWITCH | Hypercall::SET_CALLBACKS | Hypercall::SET_SEGMENT_BASE => &[E],
        Hypercall::CALLBACK_OP | Hypercall::VERSION => &[E],
        // §12.4.
        Hypercall::MMU_UPDATE => &[Errno::ESRCH, F, E, Errno::EPERM, Errno::EEXIST, Errno::ENOENT, Errno::ENOMEM],
        // §12.2.
        Hypercall::MEMORY_OP => &[E, Errno::ENOMEM, F],
        // §13: the multicall's own result; its entries are judged one by one.
        Hypercall::MULTICALL => &[E, F],
        // §19.4: always 0.
        Hypercall::SET_TIMER_OP => &[],
        // §6.2, §21.2.
        Hypercall::CONSOLE_IO => &[E, F],
        // §12.3.
        Hypercall::ADDRESS_SPACE_OP => {
            &[Errno::ENOSPC, Errno::ENOMEM, Errno::ESRCH, Errno::EBUSY, E, Errno::EPERM, Errno::ENOENT]
        }
        // §6.3, §20.3.
        Hypercall::SCHED_OP => &[E, F],
        // §17.3.
        Hypercall::EVENT_CHANNEL_OP => &[Errno::ESRCH, E, Errno::EPERM, Errno::ENOSPC, Errno::ENOMEM, Errno::EEXIST],
        // §11.5: never generated (it would return to a frame the fuzzer did not build).
        Hypercall::IRET => &[E, F],
        _ => &[Errno::ENOSYS],
    }
}
