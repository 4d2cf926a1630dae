//! Hypercall numbers, sub-operations and their argument constants (SPEC.md §5–§6).
//!
//! Numbers follow Xen's public numbering where ringfence has the same operation, so the
//! two can be read side by side; the calling convention is SPEC.md §5.1.

/// The trapping hypercall instruction (SPEC.md §5.1): `ud2` followed by the bytes `"rf"`.
/// Same registers as `syscall`; the hypervisor recognizes the sequence in its #UD handler
/// and resumes after it. Both instructions are normative and a hypervisor MUST accept
/// both; guest-rt uses `syscall`, and the conformance case `syscall_entry::forms` makes
/// the same hypercalls through both.
pub const TRAPPING_HYPERCALL: [u8; 4] = [0x0f, 0x0b, b'r', b'f'];

/// A hypercall number (RAX at the hypercall instruction).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Hypercall(pub u64);

/// The one list of hypercalls: each row gives the constant (with its doc), the number, the
/// name and the names of the argument registers it reads (RDI, RSI, RDX, R10, R8, R9 in
/// that order), in number order. It generates the constants, [`Hypercall::name`],
/// [`Hypercall::arguments`] and [`Hypercall::ALL`], so a number is written nowhere else.
macro_rules! hypercalls {
    ($($(#[doc = $doc:literal])+ $constant:ident = $number:literal, $name:literal, [$($argument:literal),*];)+) => {
        impl Hypercall {
            $($(#[doc = $doc])+ pub const $constant: Hypercall = Hypercall($number);)+

            /// Every hypercall with its name, by number: what the hypervisor's dispatch
            /// table and SPEC.md §6.4 list.
            pub const ALL: &'static [(Hypercall, &'static str)] = &[$((Hypercall::$constant, $name)),+];

            /// Name for logs and the conformance suite; `None` for numbers without a hypercall.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($number => Some($name),)+
                    _ => None,
                }
            }

            /// Names of the argument registers the hypercall reads, in register order (for
            /// traces); empty for numbers without a hypercall.
            pub const fn arguments(self) -> &'static [&'static str] {
                match self.0 {
                    $($number => &[$($argument),*],)+
                    _ => &[],
                }
            }
        }
    };
}

hypercalls! {
    /// `set_trap_table(entries, count)`: install exception handlers (SPEC.md §11.1).
    SET_TRAP_TABLE = 0, "set_trap_table", ["entries", "count"];
    /// `mmu_update(space, entries, count, done)`: batched map/unmap/protect (SPEC.md §12.4).
    MMU_UPDATE = 1, "mmu_update", ["space", "entries", "count", "done"];
    /// `stack_switch(ss, rsp)`: the guest-kernel stack for entries from guest-user mode (SPEC.md §11.2).
    STACK_SWITCH = 3, "stack_switch", ["ss", "rsp"];
    /// `set_callbacks(event, failsafe)`: where event upcalls are delivered (SPEC.md §18.2).
    SET_CALLBACKS = 4, "set_callbacks", ["event", "failsafe"];
    /// `memory_op(cmd, ...)`: gfn reservation (SPEC.md §12.2).
    MEMORY_OP = 12, "memory_op", ["cmd", "a", "b", "c"];
    /// `multicall(entries, count)`: several hypercalls at once (SPEC.md §13).
    MULTICALL = 13, "multicall", ["entries", "count"];
    /// `set_timer_op(deadline_ns)`: one-shot timer raising VIRQ_TIMER; 0 cancels (SPEC.md §19.4).
    SET_TIMER_OP = 15, "set_timer_op", ["deadline_ns"];
    /// `version(cmd)`: ABI version and feature bits (SPEC.md §6.1).
    VERSION = 17, "version", ["cmd"];
    /// `console_io(cmd, count, buffer)`: write to / read from the console (SPEC.md §6.2).
    CONSOLE_IO = 18, "console_io", ["cmd", "count", "buffer"];
    /// `iret()`: return from an exception or system call with the frame at RSP (SPEC.md §11.5).
    IRET = 23, "iret", [];
    /// `set_segment_base(which, base)`: FS and GS bases (SPEC.md §11.6).
    SET_SEGMENT_BASE = 25, "set_segment_base", ["which", "base"];
    /// `address_space_op(cmd, ...)`: create/destroy/switch/flush/query spaces (SPEC.md §12.3).
    ADDRESS_SPACE_OP = 26, "address_space_op", ["cmd", "a", "b"];
    /// `sched_op(cmd, ...)`: yield, block, shutdown, poll (SPEC.md §6.3, §20).
    SCHED_OP = 29, "sched_op", ["cmd", "a", "b", "c"];
    /// `callback_op(cmd, type, address)`: register entry points (SPEC.md §11.3).
    CALLBACK_OP = 30, "callback_op", ["cmd", "type", "address"];
    /// `event_channel_op(cmd, a, b)`: event channels (SPEC.md §17).
    EVENT_CHANNEL_OP = 32, "event_channel_op", ["cmd", "a", "b"];
}

impl Hypercall {
    /// Size of the dispatch table: numbers `>= TABLE_SIZE` are always `-ENOSYS`.
    pub const TABLE_SIZE: u64 = 64;
}

// A table row out of order, repeated or past the dispatch table does not compile.
const _: () = {
    let mut index = 0;
    while index < Hypercall::ALL.len() {
        assert!(Hypercall::ALL[index].0 .0 < Hypercall::TABLE_SIZE);
        assert!(index == 0 || Hypercall::ALL[index - 1].0 .0 < Hypercall::ALL[index].0 .0);
        index += 1;
    }
};

/// Sub-commands of [`Hypercall::VERSION`] (RDI).
pub mod version_cmd {
    /// Returns `major << 16 | minor` of the hypervisor's ABI.
    pub const ABI_VERSION: u64 = 0;
    /// Returns the feature bitmap ([`super::features`]); bit 63 is never set.
    pub const FEATURES: u64 = 1;
}

/// Feature bits returned by `version(FEATURES)`. Guests MUST ignore bits they do not know.
pub mod features {
    /// `console_io(WRITE)` is available (always, since 0.1).
    pub const CONSOLE_WRITE: u64 = 1 << 0;
    /// `sched_op(YIELD)` switches between domains (always, since 0.1).
    pub const SCHED_YIELD: u64 = 1 << 1;
    /// Trap table, `iret`, guest-user mode and `stack_switch` (since 0.2).
    pub const TRAPS: u64 = 1 << 2;
    /// `memory_op`, `address_space_op`, `mmu_update` (since 0.2).
    pub const MEMORY: u64 = 1 << 3;
    /// `multicall` (since 0.2).
    pub const MULTICALL: u64 = 1 << 4;
    /// `set_segment_base` (since 0.2).
    pub const SEGMENT_BASES: u64 = 1 << 5;
    /// x87/SSE/AVX state is per domain and preserved across switches (since 0.2).
    pub const EXTENDED_STATE: u64 = 1 << 6;
    /// Event channels, upcalls and the virtual interrupt flag (since 0.3).
    pub const EVENTS: u64 = 1 << 7;
    /// Time info in the shared-info page and the wallclock (since 0.3).
    pub const TIME: u64 = 1 << 8;
    /// `set_timer_op`, `sched_op(BLOCK | POLL)` and preemption (since 0.3).
    pub const TIMERS: u64 = 1 << 9;
    /// `console_io(READ)` and VIRQ_CONSOLE (since 0.3).
    pub const CONSOLE_READ: u64 = 1 << 10;
    /// A domain's module (`domain=<image>,module=<member>`, SPEC.md §2.4) is given to it
    /// in its memory and named by the start-info page's `module_start`, `module_length` and
    /// `module_gfn` (since 0.4).
    pub const MODULE: u64 = 1 << 11;
    /// Every bit this version defines.
    pub const ALL: u64 = CONSOLE_WRITE
        | SCHED_YIELD
        | TRAPS
        | MEMORY
        | MULTICALL
        | SEGMENT_BASES
        | EXTENDED_STATE
        | EVENTS
        | TIME
        | TIMERS
        | CONSOLE_READ
        | MODULE;
}

/// Sub-commands of [`Hypercall::CONSOLE_IO`] (RDI).
pub mod console_cmd {
    /// `console_io(WRITE, count, buffer)`: writes `count` bytes; returns `count`.
    pub const WRITE: u64 = 0;
    /// `console_io(READ, count, buffer)`: moves up to `count` bytes of this domain's
    /// pending console input to `buffer`; returns the number moved (0 if none).
    pub const READ: u64 = 1;
    /// Largest `count` one write accepts; more is `-EINVAL`.
    pub const WRITE_MAX: u64 = 4096;
}

/// Sub-commands of [`Hypercall::SCHED_OP`] (RDI).
pub mod sched_cmd {
    /// Give the CPU to the next runnable domain; returns 0 when this domain runs again.
    pub const YIELD: u64 = 0;
    /// Re-enables event delivery (clears the upcall mask) and, unless an event is already
    /// pending, sleeps until woken: a port signalled, the timer expiring, or a channel's
    /// peer closing or dying (SPEC.md §20.2). Returns 0; a return says only that something
    /// may have happened, so the caller re-checks its condition.
    pub const BLOCK: u64 = 1;
    /// `sched_op(SHUTDOWN, reason, code)`: ends the domain; never returns on success.
    pub const SHUTDOWN: u64 = 2;
    /// `sched_op(POLL, ports, count, timeout_ns)`: sleeps until one of `count` ports (a u32
    /// array) is pending (masked or not), the absolute time `timeout_ns` (0 = none) passes,
    /// or another wake-up comes (the timer, a channel's peer closing); returns 0 (SPEC.md
    /// §20.3). It leaves the upcall mask alone, so the usual upcall rule applies on its
    /// return: a poller that wants no upcall polls masked.
    pub const POLL: u64 = 3;
}

/// Shutdown reasons for `sched_op(SHUTDOWN, reason, code)` (RSI).
pub mod shutdown_reason {
    /// Orderly exit; `code` is the domain's exit code (0 = success).
    pub const POWEROFF: u64 = 0;
    /// The guest detected a fatal error of its own (panic); `code` is guest-defined.
    pub const CRASH: u64 = 3;
}

/// Sub-commands of [`Hypercall::CALLBACK_OP`] (RDI).
pub mod callback_cmd {
    /// `callback_op(REGISTER, type, address)`; address 0 unregisters.
    pub const REGISTER: u64 = 0;
}

/// Largest shutdown `code` (RDX); larger values are `-EINVAL`.
pub const SHUTDOWN_CODE_MAX: u64 = u32::MAX as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_unique_and_inside_the_table() {
        assert!(Hypercall::ALL.windows(2).all(|pair| pair[0].0 .0 < pair[1].0 .0), "by number, no duplicates");
        let mut names: Vec<&str> = Hypercall::ALL.iter().map(|(_, name)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Hypercall::ALL.len(), "no duplicate names");
        for (call, name) in Hypercall::ALL {
            assert!(call.0 < Hypercall::TABLE_SIZE, "{name}");
            assert_eq!(call.name(), Some(*name));
        }
    }

    #[test]
    fn names_exist_exactly_for_the_list() {
        for number in (0..Hypercall::TABLE_SIZE * 2).chain([u64::MAX]) {
            let listed = Hypercall::ALL.iter().find(|(call, _)| call.0 == number).map(|(_, name)| *name);
            assert_eq!(Hypercall(number).name(), listed, "number {number}");
        }
    }

    #[test]
    fn every_constant_is_listed_once_under_its_name() {
        // The constants other crates use, in number order; numbers and names come from the
        // table (SPEC.md §6.4 is checked against it by the conformance crate's tests).
        let constants = [
            Hypercall::SET_TRAP_TABLE,
            Hypercall::MMU_UPDATE,
            Hypercall::STACK_SWITCH,
            Hypercall::SET_CALLBACKS,
            Hypercall::MEMORY_OP,
            Hypercall::MULTICALL,
            Hypercall::SET_TIMER_OP,
            Hypercall::VERSION,
            Hypercall::CONSOLE_IO,
            Hypercall::IRET,
            Hypercall::SET_SEGMENT_BASE,
            Hypercall::ADDRESS_SPACE_OP,
            Hypercall::SCHED_OP,
            Hypercall::CALLBACK_OP,
            Hypercall::EVENT_CHANNEL_OP,
        ];
        let listed: Vec<Hypercall> = Hypercall::ALL.iter().map(|(call, _)| *call).collect();
        assert_eq!(listed, constants);
        assert_eq!(Hypercall::SET_TRAP_TABLE.name(), Some("set_trap_table"));
        assert_eq!(Hypercall::EVENT_CHANNEL_OP.name(), Some("event_channel_op"));
    }

    #[test]
    fn argument_names_fit_the_six_registers() {
        for (call, name) in Hypercall::ALL {
            assert!(call.arguments().len() <= 6, "{name}");
        }
        assert_eq!(Hypercall::CONSOLE_IO.arguments(), ["cmd", "count", "buffer"]);
        assert!(Hypercall::IRET.arguments().is_empty());
        assert!(Hypercall(2).arguments().is_empty(), "no hypercall, no names");
    }

    #[test]
    fn feature_bit_63_is_free() {
        assert_eq!(features::ALL >> 63, 0);
    }
}
