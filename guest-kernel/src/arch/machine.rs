//! The boundary of the real kernel: the [`Machine`] trait every platform implements, and
//! the plain data that crosses it. Nothing here knows a platform.
//!
//! The kernel is a run loop. It keeps each process's user registers in a [`UserContext`]
//! and enters user mode with [`Machine::enter_user`], which returns when user mode stops
//! for any reason — a system call, an exception, an interrupt — with that reason as a
//! [`Trap`] and the registers saved back into the context. So the kernel needs one kernel
//! stack, not one per process: a system call that must wait leaves its process asleep and
//! is restarted from its saved registers when the process is woken. Interrupts are off
//! while the kernel runs; they are on in user mode and inside [`Machine::idle`].
//!
//! Memory: the kernel allocates 4 KiB [`Frame`]s from its own heap (every platform's heap
//! is kernel memory the platform can map elsewhere) and reads and writes user memory
//! through them, never through user addresses. Each process has an [`AddressSpace`]; the
//! kernel tells the platform exactly what to change in it ([`PageUpdate`]) and keeps the
//! truth about what is mapped itself.

use core::fmt;

pub use guest_kernel_core::vdso::clock::ClockParameters;

/// Size of a page, in bytes, on every platform this kernel runs on.
pub const PAGE_SIZE: u64 = 4096;

/// The first address past user space (the lower canonical half).
pub const USER_LIMIT: u64 = 0x0000_8000_0000_0000;

/// What the kernel learns about its machine at boot, however the platform delivers it.
#[derive(Copy, Clone, Debug)]
pub struct BootInfo {
    /// The domain (PV) or `None` (native).
    pub domain_id: Option<u32>,
    /// Memory the kernel owns, in bytes.
    pub memory_bytes: u64,
    /// The kernel's command line.
    pub command_line: &'static str,
    /// The initramfs (a cpio `newc` archive) the loader passed, empty if none.
    pub initramfs: &'static [u8],
}

/// A platform operation that failed: what was attempted and the platform's error number
/// (an errno for PV), for the console.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MachineError {
    /// The operation, e.g. "map".
    pub operation: &'static str,
    /// The platform's error number.
    pub code: i64,
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed (error {})", self.operation, self.code)
    }
}

/// A 4 KiB page of kernel memory (page-aligned, from the kernel heap), named by its
/// kernel address. The platform can map it into user address spaces.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(pub u64);

/// A user address space, by the platform's handle.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressSpace(pub u64);

/// How a user page may be accessed (always readable).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PageAccess {
    /// Writes are allowed.
    pub writable: bool,
    /// Instruction fetches are allowed.
    pub executable: bool,
}

/// One change to a user address space. The kernel only asks for changes that make sense
/// for the space as it knows it (it never maps over a mapping, nor unmaps a hole); a
/// platform refuses anything else with an error rather than guessing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PageUpdate {
    /// Maps `frame` at the page-aligned user address `address`, where nothing is mapped.
    Map {
        /// A page-aligned address below [`USER_LIMIT`].
        address: u64,
        /// The frame.
        frame: Frame,
        /// Its access.
        access: PageAccess,
    },
    /// Changes the access of the mapping at `address`.
    Protect {
        /// A mapped page.
        address: u64,
        /// The new access.
        access: PageAccess,
    },
    /// Removes the mapping at `address` (the frame stays the kernel's).
    Unmap {
        /// A mapped page.
        address: u64,
    },
}

/// A process's user-mode registers, as a `syscall`, exception or interrupt left them (and
/// as [`Machine::enter_user`] restores them).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct UserRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Where user mode resumes (after a `syscall`: the next instruction).
    pub rip: u64,
    /// The user flags; the platform forces IF on and IOPL, NT, RF, VM off on entry.
    pub rflags: u64,
    /// The FS base (thread-local storage, `arch_prctl(ARCH_SET_FS)`).
    pub fs_base: u64,
}

/// Bytes of [`ExtendedState`]: an XSAVE area for x87, SSE and AVX (576 + 256 bytes),
/// rounded up. FXSAVE platforms use the first 512.
pub const EXTENDED_STATE_BYTES: usize = 1024;

/// A process's x87/SSE/AVX registers in the XSAVE (or FXSAVE) layout, saved by the
/// platform when user mode stops and restored when it resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct ExtendedState(pub [u8; EXTENDED_STATE_BYTES]);

impl ExtendedState {
    /// The state a new process starts with: x87 FCW 0x037f, MXCSR 0x1f80, every register
    /// zero (the FXSAVE/XSAVE legacy layout; XSTATE_BV 0 means "init" for XRSTOR).
    pub const fn initial() -> Self {
        let mut bytes = [0u8; EXTENDED_STATE_BYTES];
        bytes[0] = 0x7f;
        bytes[1] = 0x03;
        bytes[24] = 0x80;
        bytes[25] = 0x1f;
        // MXCSR_MASK stays 0: the CPU ignores it on restore.
        Self(bytes)
    }
}

impl Default for ExtendedState {
    fn default() -> Self {
        Self::initial()
    }
}

/// Everything of a process's user-mode CPU state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserContext {
    /// The general registers, RIP, RFLAGS and the FS base.
    pub registers: UserRegisters,
    /// The vector registers.
    pub extended: ExtendedState,
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

/// Why user mode stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trap {
    /// A `syscall`: the number is in RAX, the arguments in RDI, RSI, RDX, R10, R8, R9; the
    /// result goes in RAX. RIP is the next instruction; RCX and R11 hold what the CPU
    /// wrote (the return address and the flags), as Linux leaves them.
    SystemCall,
    /// A page fault at `address`.
    PageFault {
        /// The address that could not be accessed.
        address: u64,
        /// What the instruction tried to do.
        access: Access,
        /// A mapping was present (a protection fault) rather than missing.
        present: bool,
    },
    /// Any other exception (RIP is the faulting instruction for faults).
    Exception {
        /// The vector (0–31).
        vector: u8,
        /// The CPU's error code, or 0.
        error_code: u64,
    },
    /// An interrupt (timer, console input, another platform event) came while user mode
    /// ran; the registers are saved at the interrupted instruction.
    Interrupt,
}

/// The operations a kernel cannot perform itself on every platform.
///
/// Every method is safe for every caller: a platform validates what it is given (an
/// address space it did not create, a frame that is not kernel memory, a non-canonical
/// RIP) and answers with a [`MachineError`] (or, in `enter_user`, a fault trap) instead
/// of corrupting itself.
pub trait Machine: Sync {
    /// Describes the platform for the boot banner (e.g. "paravirtualized on ringfence,
    /// hypervisor ABI 0.3, features 0x7ff").
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result;

    /// Boot information.
    fn boot_info(&self) -> BootInfo;

    /// Writes raw bytes to the console.
    fn console_write(&self, bytes: &[u8]);

    /// Moves console input that has arrived into `buffer`; 0 if there is none (never
    /// waits: input arriving is an interrupt, which ends [`Machine::idle`] or a user run).
    fn console_read(&self, buffer: &mut [u8]) -> usize;

    /// Nanoseconds of a monotonic clock since boot.
    fn now_ns(&self) -> u64;

    /// [`Machine::now_ns`] as a function of the TSC, which user mode can read too: the vDSO
    /// computes the same clock from these. They may change (on ringfence, whenever the
    /// hypervisor updates its time record); an older set never reads ahead of a newer one.
    fn clock_parameters(&self) -> ClockParameters;

    /// Nanoseconds since 1970-01-01 UTC at [`Machine::now_ns`] = 0, if the platform has
    /// a wallclock.
    fn wallclock_at_boot_ns(&self) -> Option<u64>;

    /// Arms the one-shot timer for `deadline` ([`Machine::now_ns`] time), replacing the
    /// previous one; when it passes, user mode stops with [`Trap::Interrupt`], or
    /// [`Machine::idle`] returns. A deadline in the past fires at once.
    fn set_timer(&self, deadline_ns: u64);

    /// Waits with interrupts on until an interrupt (the timer, console input) has come,
    /// and returns with them off again. Returns at once if one came since the last
    /// return from `idle` or `enter_user`.
    fn idle(&self);

    /// Powers the machine (or domain) off with `code`.
    fn shutdown(&self, code: u32) -> !;

    /// Stops after a fatal kernel error, reporting `code`.
    fn crash(&self, code: u32) -> !;

    /// A new, empty user address space.
    fn create_space(&self) -> Result<AddressSpace, MachineError>;

    /// Destroys `space`: its mappings are gone (its frames stay the kernel's). Never the
    /// space of a running process: the kernel destroys a space only between runs.
    fn destroy_space(&self, space: AddressSpace) -> Result<(), MachineError>;

    /// Applies `updates` to `space` in order; stops at the first that fails and returns
    /// how many were applied with the error. TLB entries of the changed pages are
    /// flushed before this returns.
    fn update_space(&self, space: AddressSpace, updates: &[PageUpdate]) -> Result<(), (usize, MachineError)>;

    /// Runs `context` in user mode in `space` until it stops, saves its state back into
    /// `context` and says why. Interrupts are on in user mode and off again on return.
    fn enter_user(&self, space: AddressSpace, context: &mut UserContext) -> Trap;
}
