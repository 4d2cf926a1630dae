//! Guest-user mode (SPEC.md §11): an address space for user code, entry to it with an
//! `iret` frame, system calls back into the kernel, and the way home.
//!
//! [`run`] saves the kernel's callee-saved registers and stack pointer, registers that
//! stack with `stack_switch` (events from guest-user mode land just below it) and `iret`s
//! to the user entry. Every event from guest-user mode reaches [`trap`]'s common entry in
//! guest-kernel mode: a `syscall` goes to the [`SyscallHandler`], an exception to its trap
//! handler. When one of them ends the run ([`SyscallAction::Exit`],
//! [`TrapAction::EndUserRun`](crate::trap::TrapAction)), the saved kernel stack pointer is
//! reloaded and `run` returns the [`UserExit`].
//!
//! User code cannot call kernel code (its pages are not in the user address space), so it
//! is written in asm in its own page-aligned section, e.g.
//!
//! ```ignore
//! core::arch::global_asm!(
//!     ".pushsection .text.user_program, \"ax\", @progbits",
//!     ".balign 4096", ".global user_program_start", "user_program_start:",
//!     "mov eax, 60", "syscall",
//!     ".balign 4096", ".global user_program_end", "user_program_end:",
//!     ".popsection",
//! );
//! ```
//!
//! and [`UserSpace::map_kernel_range`] maps those pages (same addresses, same gfns) into
//! the user space.

extern crate alloc;

use alloc::alloc::{alloc_zeroed, Layout};

use hypercall_abi::hypercall::callback_cmd;
use hypercall_abi::layout::PAGE_SIZE;
use hypercall_abi::memory::map_flags;
use hypercall_abi::trap::callback_type;
use hypercall_abi::{Errno, Gfn};

use crate::hypercall::HYPERVISOR;
use crate::memory::{self, Space};
use crate::trap;
use crate::user_mode::set_syscall_handler;
pub use crate::user_mode::{run, SyscallAction, SyscallHandler, UserExit, SYSCALL_EXIT, USER_RFLAGS};

/// Registers guest-rt's trap entry as the `syscall` callback and `handler` as the Rust
/// system-call handler (call [`trap::install`] too, for exceptions).
pub fn init(handler: SyscallHandler) -> Result<(), Errno> {
    set_syscall_handler(handler);
    // SAFETY: the common trap entry follows the exception-frame protocol.
    unsafe { HYPERVISOR.callback_op(callback_cmd::REGISTER, callback_type::SYSCALL, trap::entry_address()) }.map(drop)
}

/// A guest-user address space: a handle from `address_space_op(CREATE)` and helpers to
/// map kernel pages into it for user code and data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UserSpace {
    space: Space,
}

impl UserSpace {
    /// A new empty address space.
    pub fn create() -> Result<Self, Errno> {
        memory::create_space().map(|space| Self { space })
    }

    /// The handle.
    pub fn space(&self) -> Space {
        self.space
    }

    /// Maps the page holding kernel address `kernel_address` (its gfn, found with QUERY in
    /// the initial space) at `user_address` with `flags` ([`map_flags::USER`] is added).
    pub fn map_kernel_page(&self, user_address: u64, kernel_address: u64, flags: u32) -> Result<Gfn, Errno> {
        let (gfn, _) = memory::query(Space::INITIAL, kernel_address & !(PAGE_SIZE - 1))?;
        memory::map_page(self.space, user_address & !(PAGE_SIZE - 1), gfn.0, flags | map_flags::USER)?;
        Ok(gfn)
    }

    /// Maps every page of the kernel range `[start, end)` at the same addresses with
    /// `flags` (+ USER). For user code: `0` (read-only, executable).
    pub fn map_kernel_range(&self, start: u64, end: u64, flags: u32) -> Result<(), Errno> {
        let mut page = start & !(PAGE_SIZE - 1);
        while page < end {
            self.map_kernel_page(page, page, flags)?;
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Allocates `pages` zeroed kernel pages from the heap and maps them at the same
    /// addresses, writable and not executable, for a user stack or data. Returns the
    /// lowest address (the memory is never freed: user code may use it at any time).
    pub fn allocate(&self, pages: u64) -> Result<u64, Errno> {
        if pages == 0 {
            return Err(Errno::EINVAL);
        }
        let layout =
            Layout::from_size_align((pages * PAGE_SIZE) as usize, PAGE_SIZE as usize).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `layout` has a non-zero size.
        let start = unsafe { alloc_zeroed(layout) } as u64;
        if start == 0 {
            return Err(Errno::ENOMEM);
        }
        self.map_kernel_range(start, start + pages * PAGE_SIZE, map_flags::WRITABLE | map_flags::NO_EXECUTE)?;
        Ok(start)
    }

    /// Installs the initial space as the kernel root and this one as the user root.
    pub fn activate(&self) -> Result<(), Errno> {
        memory::switch_space(Space::INITIAL, Some(self.space))
    }
}
