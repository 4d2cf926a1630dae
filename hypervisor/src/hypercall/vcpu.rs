//! The vCPU's registrations: the trap table, the kernel stack, callbacks, segment
//! bases, and `iret`.

use crate::hypercall::guest::{empty_array, error, status, Disposition, Guest};
use hypercall_abi::hypercall::callback_cmd;
use hypercall_abi::trap::{TrapTableEntry, TRAP_TABLE_MAX, VECTORS};
use hypercall_abi::Errno;
use zerocopy::{FromZeros, IntoBytes};

/// `set_callbacks(event, failsafe)`.
pub(super) fn set_callbacks(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [event, failsafe, ..] = *arguments;
    status(guest.vcpu().set_callbacks(event, failsafe))
}

/// `set_trap_table(entries, count)`: the whole table is replaced, or nothing changes.
pub(super) fn set_trap_table(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [pointer, count, ..] = *arguments;
    if count > TRAP_TABLE_MAX {
        return error(Errno::EINVAL);
    }
    // Count 0 removes every handler; `entries` is not read, but is checked as every
    // empty array is (SPEC.md §5.4, §11.1).
    if count == 0 {
        if let Err(errno) = empty_array(pointer) {
            return error(errno);
        }
        return status(guest.vcpu().set_trap_table(&[]));
    }
    // The whole table is read before anything changes, so a fault midway changes nothing.
    let mut entries = [TrapTableEntry::new_zeroed(); VECTORS];
    let entries = &mut entries[..count as usize];
    if guest.read(pointer, entries.as_mut_bytes()).is_err() {
        return error(Errno::EFAULT);
    }
    status(guest.vcpu().set_trap_table(entries))
}

/// `stack_switch(ss, rsp)`: the guest-kernel stack for events from guest-user mode.
pub(super) fn stack_switch(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [ss, rsp, ..] = *arguments;
    status(guest.vcpu().set_kernel_stack(ss, rsp))
}

/// `callback_op(REGISTER, kind, address)`.
pub(super) fn callback_op(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [command, kind, address, ..] = *arguments;
    if command != callback_cmd::REGISTER {
        return error(Errno::EINVAL);
    }
    status(guest.vcpu().register_callback(kind, address))
}

/// `set_segment_base(which, base)`.
pub(super) fn set_segment_base(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [which, base, ..] = *arguments;
    status(guest.vcpu().set_segment_base(which, base))
}

/// `iret`: the system reads and checks the frame (see [`Disposition::Iret`]).
pub(super) fn iret(_arguments: &[u64; 6], _guest: &mut dyn Guest) -> Disposition {
    Disposition::Iret
}
