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
use core::sync::atomic::{AtomicU64, Ordering};

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

/// A process's x87/SSE/AVX registers in the XSAVE (or FXSAVE) layout, as the platform
/// saves and restores them.
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
///
/// The extended state is lazy: the kernel never touches the vector registers (it is
/// soft-float), so once a context's state is loaded it stays in the processor across
/// system calls, exceptions and interrupts, and the copy here is written back only when
/// the kernel asks ([`Machine::save_extended`]). While the processor holds the state the
/// copy may be stale; [`ExtendedResidence`] says when that is.
#[derive(Debug, Default)]
pub struct UserContext {
    /// The general registers, RIP, RFLAGS and the FS base.
    pub registers: UserRegisters,
    /// The vector registers as last saved (or set by the kernel).
    extended: ExtendedState,
    /// The residence's token for the load of `extended` the processor holds, if it still
    /// does (0: never loaded, or replaced since).
    loaded: u64,
}

impl UserContext {
    /// A context with `registers` and `extended`, loaded nowhere yet.
    pub fn new(registers: UserRegisters, extended: ExtendedState) -> Self {
        Self { registers, extended, loaded: 0 }
    }

    /// The saved extended state: current only after [`Machine::save_extended`] since the
    /// last run (before that, user mode may have changed the live registers).
    pub fn extended(&self) -> &ExtendedState {
        &self.extended
    }

    /// Replaces the extended state: the next run loads this, not what the processor
    /// holds.
    pub fn set_extended(&mut self, extended: ExtendedState) {
        self.extended = extended;
        self.loaded = 0;
    }
}

/// A copy is a new context: the processor holds the original's state, never the copy's,
/// so the copy's first run loads what was saved (the kernel saves first when it copies a
/// running process, [`Machine::save_extended`]).
impl Clone for UserContext {
    fn clone(&self) -> Self {
        Self::new(self.registers, self.extended.clone())
    }
}

/// Which context's extended state the processor's registers hold: the platform's record
/// behind lazy switching, one per processor.
///
/// Each load gets a fresh token, kept both here and in the context loaded. The processor
/// holds a context's state exactly while the two agree: loading another context, or
/// replacing the context's copy, or copying the context (a copy has no token) ends it.
/// Tokens are never reused, so a context that was freed and a new one at the same
/// address (or a process id used again) cannot be taken for each other, and no process
/// ever resumes with registers another one left.
#[derive(Debug, Default)]
#[repr(C)]
pub struct ExtendedResidence {
    /// The token of the load the registers hold (0: none known).
    live: AtomicU64,
    /// The last token given out.
    issued: AtomicU64,
}

impl ExtendedResidence {
    /// Holding nothing yet.
    pub const fn new() -> Self {
        Self { live: AtomicU64::new(0), issued: AtomicU64::new(0) }
    }

    /// Whether the registers hold `context`'s extended state.
    pub fn holds(&self, context: &UserContext) -> bool {
        context.loaded != 0 && context.loaded == self.live.load(Ordering::Relaxed)
    }

    /// Makes the registers hold `context`'s state before it runs: nothing to do if they
    /// do; otherwise `load` gets the saved copy to make loadable and load, and says
    /// whether it could (a context it refuses does not run; the registers then hold no
    /// context's state that is known).
    pub fn load(&self, context: &mut UserContext, load: impl FnOnce(&mut ExtendedState) -> bool) -> bool {
        if self.holds(context) {
            return true;
        }
        self.live.store(0, Ordering::Relaxed);
        context.loaded = 0;
        if !load(&mut context.extended) {
            return false;
        }
        let token = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        context.loaded = token;
        self.live.store(token, Ordering::Relaxed);
        true
    }

    /// Writes `context`'s state back into its copy with `save` if the registers hold it
    /// (they go on holding it: the copy and the registers agree until user mode runs).
    pub fn save(&self, context: &mut UserContext, save: impl FnOnce(&mut ExtendedState)) {
        if self.holds(context) {
            save(&mut context.extended);
        }
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

    /// Runs `context` in user mode in `space` until it stops, saves its general registers
    /// back into `context` and says why. Interrupts are on in user mode and off again on
    /// return. Its extended state stays in the processor (see [`UserContext`]): running a
    /// context whose state the processor does not hold loads that context's saved copy
    /// in place of whatever the processor held, so the kernel saves the state of a
    /// process it will run again ([`Machine::save_extended`]) before it runs another.
    fn enter_user(&self, space: AddressSpace, context: &mut UserContext) -> Trap;

    /// Makes `context`'s saved extended state current: writes the processor's registers
    /// back into it if they hold its state; otherwise the copy is current already.
    fn save_extended(&self, context: &mut UserContext);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the registers: what the last load put there.
    fn load_into(registers: &mut Option<ExtendedState>) -> impl FnOnce(&mut ExtendedState) -> bool + '_ {
        |copy| {
            *registers = Some(copy.clone());
            true
        }
    }

    fn state(byte: u8) -> ExtendedState {
        let mut state = ExtendedState::initial();
        state.0[160] = byte;
        state
    }

    #[test]
    fn a_context_is_loaded_once_and_then_held() {
        let residence = ExtendedResidence::new();
        let mut context = UserContext::new(UserRegisters::default(), state(1));
        let mut registers = None;
        assert!(!residence.holds(&context));
        assert!(residence.load(&mut context, load_into(&mut registers)));
        assert_eq!(registers, Some(state(1)));
        assert!(residence.holds(&context));
        assert!(residence.load(&mut context, |_| panic!("loaded again although held")));
    }

    #[test]
    fn loading_another_context_ends_the_hold() {
        let residence = ExtendedResidence::new();
        let mut first = UserContext::new(UserRegisters::default(), state(1));
        let mut second = UserContext::new(UserRegisters::default(), state(2));
        let mut registers = None;
        residence.load(&mut first, load_into(&mut registers));
        residence.load(&mut second, load_into(&mut registers));
        assert!(!residence.holds(&first) && residence.holds(&second));
        residence.load(&mut first, load_into(&mut registers));
        assert_eq!(registers, Some(state(1)), "the first context's own copy is loaded again");
    }

    #[test]
    fn a_copy_or_a_replaced_state_is_never_held() {
        let residence = ExtendedResidence::new();
        let mut context = UserContext::new(UserRegisters::default(), state(1));
        let mut registers = None;
        residence.load(&mut context, load_into(&mut registers));
        let mut copy = context.clone();
        assert!(!residence.holds(&copy), "a fork's copy loads its own state");
        assert!(residence.holds(&context));
        copy.set_extended(state(3));
        context.set_extended(state(4));
        assert!(!residence.holds(&context), "a state the kernel set is loaded, not the registers kept");
        residence.load(&mut context, load_into(&mut registers));
        assert_eq!(registers, Some(state(4)));
    }

    #[test]
    fn a_new_context_never_inherits_the_registers() {
        let residence = ExtendedResidence::new();
        let mut registers = None;
        {
            let mut gone = UserContext::default();
            residence.load(&mut gone, load_into(&mut registers));
        }
        let fresh = UserContext::default();
        assert!(!residence.holds(&fresh), "a context made after the held one was freed loads its own state");
    }

    #[test]
    fn a_refused_load_leaves_nothing_held() {
        let residence = ExtendedResidence::new();
        let mut registers = None;
        let mut held = UserContext::default();
        residence.load(&mut held, load_into(&mut registers));
        let mut refused = UserContext::default();
        assert!(!residence.load(&mut refused, |_| false));
        assert!(!residence.holds(&refused) && !residence.holds(&held));
    }

    #[test]
    fn only_the_held_context_is_saved() {
        let residence = ExtendedResidence::new();
        let mut registers = None;
        let mut held = UserContext::new(UserRegisters::default(), state(1));
        let mut other = UserContext::new(UserRegisters::default(), state(2));
        residence.load(&mut held, load_into(&mut registers));
        residence.save(&mut other, |_| panic!("saved a context the registers do not hold"));
        residence.save(&mut held, |copy| *copy = state(5));
        assert_eq!(held.extended(), &state(5));
        assert!(residence.holds(&held), "saving keeps the registers the context's");
    }
}
