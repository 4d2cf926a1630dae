//! Entry and exit assembly (`entry.s`): hypercalls by `syscall`, exceptions and
//! interrupts through the IDT stubs, and the return path to guests.

use hypervisor::trap::frame::TrapFrame;

core::arch::global_asm!(include_str!("entry.s"));

extern "C" {
    /// The `syscall` entry point (LSTAR).
    pub fn hypercall_entry();
    fn enter_guest(frame: *const TrapFrame) -> !;
    #[link_name = "idle_halt"]
    fn idle_halt_instructions();
    /// `xsave64` of the components in `mask` to the 64-byte aligned `area`.
    pub fn extended_state_xsave(area: *mut u8, mask: u64);
    /// `xrstor64` of the components in `mask` from the 64-byte aligned `area`.
    pub fn extended_state_xrstor(area: *const u8, mask: u64);
    /// `fxsave64` to the 16-byte aligned 512-byte `area`.
    pub fn extended_state_fxsave(area: *mut u8);
    /// `fxrstor64` from the 16-byte aligned 512-byte `area`.
    pub fn extended_state_fxrstor(area: *const u8);
}

/// Halts until an interrupt has been taken (SPEC.md §20.1: the hypervisor halts when no
/// domain can run). The caller holds no lock an interrupt handler needs.
pub fn idle_halt() {
    // SAFETY: enables interrupts only for the `hlt`; the IDT and every handler are set up
    // before the first domain runs, and interrupts are off again when this returns.
    unsafe { idle_halt_instructions() }
}

/// Address for LSTAR.
pub fn hypercall_entry_address() -> u64 {
    hypercall_entry as *const () as u64
}

/// The frame the first guest entry pops; it cannot live on the stack being abandoned.
static mut FIRST_ENTRY: TrapFrame = TrapFrame {
    r15: 0,
    r14: 0,
    r13: 0,
    r12: 0,
    r11: 0,
    r10: 0,
    r9: 0,
    r8: 0,
    rbp: 0,
    rdi: 0,
    rsi: 0,
    rdx: 0,
    rcx: 0,
    rbx: 0,
    rax: 0,
    vector: 0,
    error_code: 0,
    rip: 0,
    cs: 0,
    rflags: 0,
    rsp: 0,
    ss: 0,
};

/// Leaves the boot path for good and runs the guest whose state is `frame`. The caller
/// has already validated the frame with `TrapFrame::prepare_return`.
pub fn run_first(frame: &TrapFrame) -> ! {
    // SAFETY: called once, on the boot path, with interrupts off; nothing else refers to
    // FIRST_ENTRY, and `enter_guest` pops a complete TrapFrame from it and `iretq`s to
    // ring 3 with the guest's selectors.
    unsafe {
        let slot = &raw mut FIRST_ENTRY;
        slot.write(*frame);
        enter_guest(slot)
    }
}
