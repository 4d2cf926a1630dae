//! The virtual CPU state that the trap hypercalls change and exception delivery reads:
//! which guest mode runs, the trap table, the guest-kernel stack for events from
//! guest-user mode, the system-call entry, the event callbacks and the segment bases.
//!
//! Every setter validates its whole input before changing anything, so a refused
//! hypercall leaves the vCPU exactly as it was.

use hypercall_abi::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START};
use hypercall_abi::trap::{callback_type, segment, trap_flags, vector, TrapTableEntry, KERNEL_SS, VECTORS};
use hypercall_abi::Errno;

/// The virtual privilege level of the guest. Both are hardware ring 3; the mode decides
/// which address space is loaded, which GS base is live and which stack events use.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Guest-kernel mode: kernel root loaded, hypercalls allowed.
    Kernel,
    /// Guest-user mode: user root loaded; `syscall` and exceptions bounce to the kernel.
    User,
}

/// One installed trap-table entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TrapHandler {
    /// Guest-kernel address the event is delivered to (never 0).
    pub handler: u64,
    /// Guest-user code may raise the vector with `int n` / `int3`.
    pub user_may_raise: bool,
}

/// A domain's single virtual CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vcpu {
    /// The mode the guest runs in (or resumes in).
    pub mode: Mode,
    trap_table: [Option<TrapHandler>; VECTORS],
    /// Guest-kernel stack top for events that arrive in guest-user mode (`stack_switch`).
    pub kernel_stack: Option<u64>,
    /// Entry for guest-user `syscall` (`callback_op(REGISTER, SYSCALL, ..)`).
    pub syscall_entry: Option<u64>,
    /// Where event upcalls are delivered (`set_callbacks`); none: events stay pending.
    pub event_callback: Option<u64>,
    /// The failsafe callback (`set_callbacks`): validated and recorded but never called,
    /// since this version has no segment reload that could fail.
    pub failsafe_callback: Option<u64>,
    /// FS base, live in both modes.
    pub fs_base: u64,
    /// GS base while in guest-kernel mode.
    pub gs_kernel: u64,
    /// GS base while in guest-user mode.
    pub gs_user: u64,
    /// Set by [`Vcpu::set_segment_base`]; the system writes the MSRs and clears it.
    pub segments_dirty: bool,
}

impl Default for Vcpu {
    fn default() -> Self {
        Self::new()
    }
}

/// True if `address` may be a guest entry point or stack: canonical and outside the
/// hypervisor's range (jumping there would only fault, but refusing early gives a clear
/// error instead of a confusing kill later).
pub fn is_guest_address(address: u64) -> bool {
    is_canonical(address) && !(HYPERVISOR_START..HYPERVISOR_END).contains(&address)
}

/// Vectors guest-user code may be allowed to raise: `int3`, `into` and the ones that are
/// never CPU exceptions. Letting user code raise e.g. #PF would let it forge a fault the
/// kernel trusts.
fn may_be_user_raised(vector: u8) -> bool {
    vector == vector::BREAKPOINT || vector == vector::OVERFLOW || vector >= vector::FIRST_SOFTWARE
}

impl Vcpu {
    /// A new domain's vCPU: guest-kernel mode, empty trap table, no stack, no callback,
    /// zero segment bases.
    pub fn new() -> Self {
        Self {
            mode: Mode::Kernel,
            trap_table: [None; VECTORS],
            kernel_stack: None,
            syscall_entry: None,
            event_callback: None,
            failsafe_callback: None,
            fs_base: 0,
            gs_kernel: 0,
            gs_user: 0,
            segments_dirty: false,
        }
    }

    /// The handler installed for `vector`, if any.
    pub fn trap_handler(&self, vector: u8) -> Option<TrapHandler> {
        self.trap_table[usize::from(vector)]
    }

    /// `set_trap_table` on entries already read from the guest. An empty list clears the
    /// whole table; otherwise every entry is validated first (all-or-nothing), then the
    /// listed vectors are set in order (handler 0 removes; a later duplicate wins).
    pub fn set_trap_table(&mut self, entries: &[TrapTableEntry]) -> Result<(), Errno> {
        if entries.len() > VECTORS {
            return Err(Errno::EINVAL);
        }
        if entries.is_empty() {
            self.trap_table = [None; VECTORS];
            return Ok(());
        }
        for entry in entries {
            let flags_valid = entry.flags & !trap_flags::ALL == 0;
            let user_valid = entry.flags & trap_flags::USER_MAY_RAISE == 0 || may_be_user_raised(entry.vector);
            let handler = entry.handler.0;
            let handler_valid = handler == 0 || is_guest_address(handler);
            if !flags_valid || !user_valid || entry.reserved != [0; 6] || !handler_valid {
                return Err(Errno::EINVAL);
            }
        }
        for entry in entries {
            self.trap_table[usize::from(entry.vector)] = (entry.handler.0 != 0).then_some(TrapHandler {
                handler: entry.handler.0,
                user_may_raise: entry.flags & trap_flags::USER_MAY_RAISE != 0,
            });
        }
        Ok(())
    }

    /// `stack_switch(ss, rsp)`: the guest-kernel stack for events from guest-user mode.
    pub fn set_kernel_stack(&mut self, ss: u64, rsp: u64) -> Result<(), Errno> {
        if ss != KERNEL_SS || !is_guest_address(rsp) {
            return Err(Errno::EINVAL);
        }
        self.kernel_stack = Some(rsp);
        Ok(())
    }

    /// `callback_op(REGISTER, kind, address)`; address 0 unregisters.
    pub fn register_callback(&mut self, kind: u64, address: u64) -> Result<(), Errno> {
        if kind != callback_type::SYSCALL || (address != 0 && !is_guest_address(address)) {
            return Err(Errno::EINVAL);
        }
        self.syscall_entry = (address != 0).then_some(address);
        Ok(())
    }

    /// `set_callbacks(event, failsafe)`: both are 0 (unregister) or a guest address;
    /// either one bad refuses both.
    pub fn set_callbacks(&mut self, event: u64, failsafe: u64) -> Result<(), Errno> {
        let valid = |address: u64| address == 0 || is_guest_address(address);
        if !valid(event) || !valid(failsafe) {
            return Err(Errno::EINVAL);
        }
        self.event_callback = (event != 0).then_some(event);
        self.failsafe_callback = (failsafe != 0).then_some(failsafe);
        Ok(())
    }

    /// `set_segment_base(which, base)`. The base must be canonical: writing a
    /// non-canonical value to the base MSRs faults in the hypervisor (XSA-193). A base
    /// inside the hypervisor range is only a number and is allowed.
    pub fn set_segment_base(&mut self, which: u64, base: u64) -> Result<(), Errno> {
        if !is_canonical(base) {
            return Err(Errno::EINVAL);
        }
        let slot = match which {
            segment::FS => &mut self.fs_base,
            segment::GS_KERNEL => &mut self.gs_kernel,
            segment::GS_USER => &mut self.gs_user,
            _ => return Err(Errno::EINVAL),
        };
        *slot = base;
        self.segments_dirty = true;
        Ok(())
    }

    /// The GS base that is live in the current mode.
    pub fn gs_base(&self) -> u64 {
        match self.mode {
            Mode::Kernel => self.gs_kernel,
            Mode::User => self.gs_user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::trap::USER_SS;

    const HANDLER: u64 = 0xffff_ffff_8000_1000;

    fn entry(vector: u8, flags: u8, handler: u64) -> TrapTableEntry {
        TrapTableEntry { vector, flags, reserved: [0; 6], handler: hypercall_abi::GuestVirtualAddress(handler) }
    }

    #[test]
    fn new_vcpu_is_empty_kernel_mode() {
        let vcpu = Vcpu::new();
        assert_eq!(vcpu.mode, Mode::Kernel);
        assert!((0..=255).all(|vector| vcpu.trap_handler(vector).is_none()));
        assert_eq!((vcpu.kernel_stack, vcpu.syscall_entry), (None, None));
        assert_eq!((vcpu.event_callback, vcpu.failsafe_callback), (None, None));
        assert!(!vcpu.segments_dirty);
        assert_eq!(vcpu, Vcpu::default());
    }

    #[test]
    fn a_trap_table_of_every_vector_is_accepted_and_one_more_is_not() {
        let mut vcpu = Vcpu::new();
        let all: Vec<TrapTableEntry> = (0..=255u8).map(|vector| entry(vector, 0, HANDLER)).collect();
        assert_eq!(all.len(), VECTORS);
        vcpu.set_trap_table(&all).unwrap();
        assert!((0..=255).all(|vector| vcpu.trap_handler(vector).is_some()));
        let too_many: Vec<TrapTableEntry> = all.iter().chain(&all[..1]).copied().collect();
        assert_eq!(vcpu.set_trap_table(&too_many), Err(Errno::EINVAL));
    }

    #[test]
    fn trap_table_sets_and_removes() {
        let mut vcpu = Vcpu::new();
        vcpu.set_trap_table(&[entry(14, 0, HANDLER), entry(0x80, 1, HANDLER + 16)]).unwrap();
        assert_eq!(vcpu.trap_handler(14), Some(TrapHandler { handler: HANDLER, user_may_raise: false }));
        assert_eq!(vcpu.trap_handler(0x80), Some(TrapHandler { handler: HANDLER + 16, user_may_raise: true }));
        // Unlisted vectors stay; handler 0 removes.
        vcpu.set_trap_table(&[entry(14, 0, 0)]).unwrap();
        assert_eq!(vcpu.trap_handler(14), None);
        assert!(vcpu.trap_handler(0x80).is_some());
        // A later duplicate wins.
        vcpu.set_trap_table(&[entry(3, 0, HANDLER), entry(3, 1, HANDLER + 32)]).unwrap();
        assert_eq!(vcpu.trap_handler(3), Some(TrapHandler { handler: HANDLER + 32, user_may_raise: true }));
    }

    #[test]
    fn empty_trap_table_clears_everything() {
        let mut vcpu = Vcpu::new();
        vcpu.set_trap_table(&[entry(13, 0, HANDLER), entry(255, 1, HANDLER)]).unwrap();
        vcpu.set_trap_table(&[]).unwrap();
        assert!((0..=255).all(|vector| vcpu.trap_handler(vector).is_none()));
    }

    #[test]
    fn user_may_raise_only_on_allowed_vectors() {
        let mut vcpu = Vcpu::new();
        for vector in [3, 4, 32, 0x80, 255] {
            assert_eq!(
                vcpu.set_trap_table(&[entry(vector, trap_flags::USER_MAY_RAISE, HANDLER)]),
                Ok(()),
                "vector {vector}"
            );
        }
        for vector in [0, 1, 2, 5, 6, 13, 14, 31] {
            assert_eq!(
                vcpu.set_trap_table(&[entry(vector, trap_flags::USER_MAY_RAISE, HANDLER)]),
                Err(Errno::EINVAL),
                "vector {vector}"
            );
            assert_eq!(vcpu.trap_handler(vector), None);
        }
    }

    #[test]
    fn trap_table_rejects_bad_entries_all_or_nothing() {
        let mut bad_reserved = entry(14, 0, HANDLER);
        bad_reserved.reserved[5] = 1;
        let bad = [
            entry(14, 2, HANDLER),
            entry(14, 0x80, HANDLER),
            bad_reserved,
            entry(14, 0, 0x0000_8000_0000_0000),
            entry(14, 0, 0xffff_7fff_ffff_f000),
            entry(14, 0, HYPERVISOR_START),
            entry(14, 0, HYPERVISOR_END - 1),
        ];
        for bad_entry in bad {
            let mut vcpu = Vcpu::new();
            vcpu.set_trap_table(&[entry(6, 0, HANDLER)]).unwrap();
            let before = vcpu.clone();
            // The good entries before the bad one must not be applied either.
            assert_eq!(
                vcpu.set_trap_table(&[entry(13, 0, HANDLER), entry(6, 0, 0), bad_entry]),
                Err(Errno::EINVAL),
                "{bad_entry:?}"
            );
            assert_eq!(vcpu, before);
        }
        let mut vcpu = Vcpu::new();
        assert_eq!(
            vcpu.set_trap_table(&[entry(14, 0, HYPERVISOR_END)]),
            Ok(()),
            "the end of the range is guest memory"
        );
        assert_eq!(vcpu.set_trap_table(&[entry(0, 0, 0); VECTORS + 1]), Err(Errno::EINVAL));
    }

    #[test]
    fn stack_switch_rules() {
        let mut vcpu = Vcpu::new();
        assert_eq!(vcpu.set_kernel_stack(KERNEL_SS, 0xffff_ffff_8010_0000), Ok(()));
        assert_eq!(vcpu.kernel_stack, Some(0xffff_ffff_8010_0000));
        for (ss, rsp) in [
            (USER_SS, 0x1000),
            (0x10, 0x1000),
            (KERNEL_SS, 0x0000_8000_0000_0000),
            (KERNEL_SS, HYPERVISOR_START + 0x1000),
        ] {
            assert_eq!(vcpu.set_kernel_stack(ss, rsp), Err(Errno::EINVAL), "{ss:#x} {rsp:#x}");
        }
        assert_eq!(vcpu.kernel_stack, Some(0xffff_ffff_8010_0000), "unchanged by refusals");
    }

    #[test]
    fn callback_rules() {
        let mut vcpu = Vcpu::new();
        assert_eq!(vcpu.register_callback(callback_type::SYSCALL, HANDLER), Ok(()));
        assert_eq!(vcpu.syscall_entry, Some(HANDLER));
        assert_eq!(vcpu.register_callback(1, HANDLER), Err(Errno::EINVAL));
        assert_eq!(vcpu.register_callback(callback_type::SYSCALL, 0x0000_8000_0000_0000), Err(Errno::EINVAL));
        assert_eq!(vcpu.register_callback(callback_type::SYSCALL, HYPERVISOR_START), Err(Errno::EINVAL));
        assert_eq!(vcpu.syscall_entry, Some(HANDLER));
        assert_eq!(vcpu.register_callback(callback_type::SYSCALL, 0), Ok(()));
        assert_eq!(vcpu.syscall_entry, None);
    }

    #[test]
    fn event_callbacks() {
        let mut vcpu = Vcpu::new();
        assert_eq!(vcpu.set_callbacks(HANDLER, HANDLER + 16), Ok(()));
        assert_eq!((vcpu.event_callback, vcpu.failsafe_callback), (Some(HANDLER), Some(HANDLER + 16)));
        assert_eq!(vcpu.set_callbacks(HANDLER_END_OF_HALF, 0), Ok(()), "the top of the lower half");
        assert_eq!((vcpu.event_callback, vcpu.failsafe_callback), (Some(HANDLER_END_OF_HALF), None));
        let before = vcpu.clone();
        for (event, failsafe) in [
            (0x0000_8000_0000_0000, 0),
            (0, 0x0000_8000_0000_0000),
            (HYPERVISOR_START, HANDLER),
            (HANDLER, HYPERVISOR_END - 1),
            (u64::MAX >> 1, 0),
        ] {
            assert_eq!(vcpu.set_callbacks(event, failsafe), Err(Errno::EINVAL), "{event:#x} {failsafe:#x}");
            assert_eq!(vcpu, before, "a refusal changes neither");
        }
        assert_eq!(vcpu.set_callbacks(HYPERVISOR_END, 0), Ok(()));
        assert_eq!(vcpu.set_callbacks(0, 0), Ok(()));
        assert_eq!((vcpu.event_callback, vcpu.failsafe_callback), (None, None));
    }

    const HANDLER_END_OF_HALF: u64 = 0x0000_7fff_ffff_f000;

    #[test]
    fn segment_bases() {
        let mut vcpu = Vcpu::new();
        assert_eq!(vcpu.set_segment_base(segment::FS, 0x7000), Ok(()));
        assert!(vcpu.segments_dirty);
        assert_eq!(vcpu.set_segment_base(segment::GS_KERNEL, 0xffff_ffff_8000_0000), Ok(()));
        assert_eq!(vcpu.set_segment_base(segment::GS_USER, HYPERVISOR_START), Ok(()), "only a number");
        assert_eq!((vcpu.fs_base, vcpu.gs_kernel, vcpu.gs_user), (0x7000, 0xffff_ffff_8000_0000, HYPERVISOR_START));
        assert_eq!(vcpu.gs_base(), 0xffff_ffff_8000_0000);
        vcpu.mode = Mode::User;
        assert_eq!(vcpu.gs_base(), HYPERVISOR_START);
        vcpu.segments_dirty = false;
        assert_eq!(vcpu.set_segment_base(segment::FS, 0x0000_8000_0000_0000), Err(Errno::EINVAL), "XSA-193");
        assert_eq!(vcpu.set_segment_base(3, 0), Err(Errno::EINVAL));
        assert!(!vcpu.segments_dirty);
        assert_eq!(vcpu.fs_base, 0x7000);
    }
}
