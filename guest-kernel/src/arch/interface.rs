//! The boundary itself: the [`Arch`] trait, and the plain data exceptions, system calls
//! and user runs cross it as. Nothing here knows a platform.

use core::fmt;

/// What the kernel learns about its machine at boot, however the platform delivers it.
#[derive(Copy, Clone, Debug)]
pub struct BootInfo {
    /// The domain (PV) or `None` (native).
    pub domain_id: Option<u32>,
    /// Memory the kernel owns, in bytes.
    pub memory_bytes: u64,
    /// The kernel's command line.
    pub command_line: &'static str,
}

/// A platform operation that failed: what was attempted and the platform's error number
/// (an errno for PV), for the console.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ArchError {
    /// The operation, e.g. "map".
    pub operation: &'static str,
    /// The platform's error number.
    pub code: i64,
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed (error {})", self.operation, self.code)
    }
}

/// The kind of access that faulted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// A page fault as the core sees it.
#[derive(Copy, Clone, Debug)]
pub struct PageFault {
    /// The address that could not be accessed.
    pub address: u64,
    /// The faulting instruction.
    pub instruction: u64,
    /// What the instruction tried to do.
    pub access: Access,
    /// A mapping was present (a protection fault) rather than missing.
    pub present: bool,
    /// The fault happened in user mode.
    pub user: bool,
}

/// The core's verdict on a fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultResolution {
    /// The cause is fixed: re-execute the faulting instruction.
    Retry,
    /// Not the core's to fix: the platform ends the user process, or reports the kernel
    /// fault and crashes.
    Unhandled,
}

/// A breakpoint trap (`int3`).
#[derive(Copy, Clone, Debug)]
pub struct Breakpoint {
    /// The address execution resumes at (just after the breakpoint instruction).
    pub resume: u64,
    /// The trap happened in user mode.
    pub user: bool,
}

/// The core's exception entry points, which the platform's handlers call. Implemented by a
/// core type, so the platform's handlers can be plain functions instantiated for it.
pub trait ExceptionHandlers<A: Arch> {
    /// A page fault in kernel or user mode.
    fn page_fault(arch: &A, fault: &PageFault) -> FaultResolution;

    /// A breakpoint; execution resumes after it.
    fn breakpoint(arch: &A, breakpoint: &Breakpoint);
}

/// A system call from user mode: the number and six arguments (x86-64 convention).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SystemCall {
    /// The system-call number.
    pub number: u64,
    /// The arguments, in order.
    pub arguments: [u64; 6],
}

/// The core's answer to a system call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SyscallResult {
    /// Return to the process with this value.
    Return(u64),
    /// End the process with this exit code.
    Exit(u64),
}

/// The core's system-call dispatcher for one user run.
pub type SyscallDispatcher<'a> = dyn FnMut(&SystemCall) -> SyscallResult + 'a;

/// Where the pages of a user region come from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// The kernel's own pages starting at this kernel address, shared read-only and
    /// executable (program text linked into the kernel).
    Kernel(u64),
    /// Fresh zeroed pages, writable and not executable (stack, data), freed after the run.
    Zeroed,
}

/// A page-aligned range of a user address space.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UserRegion {
    /// First address (page-aligned, below the user-space limit).
    pub start: u64,
    /// Length in pages.
    pub pages: u64,
    /// What backs it.
    pub backing: Backing,
}

impl UserRegion {
    /// One past the last address.
    pub const fn end(&self) -> u64 {
        self.start + self.pages * PAGE_SIZE
    }
}

/// A user program to run in a new address space.
#[derive(Copy, Clone, Debug)]
pub struct UserImage<'a> {
    /// Everything mapped in the address space.
    pub regions: &'a [UserRegion],
    /// The first instruction.
    pub entry: u64,
    /// The initial stack pointer.
    pub stack_top: u64,
    /// Passed in the first argument register.
    pub argument: u64,
}

/// How a user run ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UserExit {
    /// The process asked to exit with this code.
    Exited(u64),
    /// An exception the core did not resolve ended it.
    Faulted {
        /// The exception's short name (e.g. "#PF").
        exception: &'static str,
        /// The faulting instruction.
        instruction: u64,
        /// The faulting address, for page faults (else 0).
        address: u64,
    },
}

/// Size of a page, in bytes, on every platform this kernel runs on.
pub const PAGE_SIZE: u64 = 4096;

/// The operations a kernel cannot perform itself on every platform.
pub trait Arch: Sync {
    /// Describes the platform for the boot banner (e.g. "paravirtualized on ringfence,
    /// hypervisor ABI 0.3, features 0x7ff").
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result;

    /// Boot information.
    fn boot_info(&self) -> BootInfo;

    /// Writes raw bytes to the console.
    fn console_write(&self, bytes: &[u8]);

    /// Registers the interrupt (event) entry and enables interrupts.
    fn start_interrupts(&self) -> Result<(), ArchError>;

    /// Whether interrupts (virtual or real) are enabled.
    fn interrupts_enabled(&self) -> bool;

    /// Enables interrupts.
    fn enable_interrupts(&self);

    /// Disables interrupts; returns whether they were enabled before.
    fn disable_interrupts(&self) -> bool;

    /// Waits until something may have happened (an interrupt, another domain's turn).
    fn idle(&self);

    /// A monotonic timer, in cycles of [`Arch::timer_frequency_hint`] (if known).
    fn timer_read(&self) -> u64;

    /// Timer ticks per second if the platform says so.
    fn timer_frequency_hint(&self) -> Option<u64>;

    /// Seconds since 1970-01-01 UTC now, if the platform has a wallclock.
    fn wallclock_seconds(&self) -> Option<u64>;

    /// Moves console input that has arrived into `buffer`; 0 if there is none (never
    /// waits: [`Arch::idle`] sleeps until input or another event may have come).
    fn console_read(&self, buffer: &mut [u8]) -> usize;

    /// Powers the machine (or domain) off with `code`.
    fn shutdown(&self, code: u32) -> !;

    /// Stops after a fatal kernel error, reporting `code`.
    fn crash(&self, code: u32) -> !;

    /// Installs the exception and system-call entry: page faults and breakpoints go to
    /// `H`; any other exception ends a user process, or crashes the kernel with a report.
    fn install_exception_handlers<H: ExceptionHandlers<Self>>(&self) -> Result<(), ArchError>
    where
        Self: Sized;

    /// Executes a breakpoint instruction (to [`ExceptionHandlers::breakpoint`], then on).
    fn breakpoint(&self);

    /// Maps a fresh zeroed, writable, non-executable page at the page-aligned kernel
    /// address `address`. Works inside an exception handler.
    fn map_zeroed_page(&self, address: u64) -> Result<(), ArchError>;

    /// Unmaps pages mapped by [`Arch::map_zeroed_page`] and frees them, in as few platform
    /// operations as it can; stops at the first failure.
    fn unmap_pages(&self, addresses: &[u64]) -> Result<(), ArchError>;

    /// Runs `image` in a new user address space until it exits or faults, passing each
    /// system call to `syscalls`; the address space and its zeroed pages are gone when
    /// this returns.
    fn run_user(&self, image: &UserImage<'_>, syscalls: &mut SyscallDispatcher<'_>) -> Result<UserExit, ArchError>;

    /// Copies user memory of the running process at `address` into `buffer` (only from
    /// inside a system call). Fails if any byte is outside the process's regions.
    fn copy_from_user(&self, address: u64, buffer: &mut [u8]) -> Result<(), ArchError>;
}
