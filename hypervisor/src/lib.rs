//! The hypervisor's policy: everything above the machine, tested on the host.
//!
//! The binary (`main.rs`, `arch/`) implements [`platform::Platform`] and the
//! [`mm::paging::FrameMemory`] access to frames, and calls [`system::System`] from its
//! entry points. The library has no unsafe code; the one unsafe trait, `FrameMemory`,
//! states what the machine's implementation promises.
//!
//! Rooms, lowest first; each imports only rooms listed before it:
//!
//! | room        | concern |
//! |-------------|---------|
//! | `mm`        | frames, page tables, a domain's memory, the checked guest-memory accessor |
//! | `platform`  | what the policy needs from the machine (the `Platform` trait) |
//! | `time`      | the TSC clock, timers, the wallclock |
//! | `console`   | console input ring and escape decoder |
//! | `sched`     | the round-robin scheduling policy |
//! | `trace`     | the hypercall trace: which domains, each one's bounded record ring |
//! | `boot`      | boot inputs: the guest-image archive, the command line |
//! | `domain`    | image validation, layout, builder, vCPU state, outcomes |
//! | `event`     | event-channel ports, shared-info pending/mask bits and upcalls |
//! | `trap`      | trap frames, bounces to the guest kernel, `iret` validation |
//! | `hypercall` | the dispatch table and the handlers, by family |
//! | `system`    | the domain table and what entries do to it: switch, wake-ups, focus, delivery |
#![cfg_attr(not(test), no_std)]
// Deny, not forbid: `mm::paging::FrameMemory` is an unsafe trait whose contract the
// machine's implementation keeps. The library has no unsafe block and no unsafe function.
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod boot;
pub mod console;
pub mod domain;
pub mod event;
pub mod hypercall;
pub mod mm;
pub mod platform;
pub mod sched;
pub mod system;
pub mod time;
pub mod trace;
pub mod trap;
