//! Xen's PV ABI, as much as this guest needs, written once here (public/xen.h, public/elfnote.h,
//! public/sched.h, public/version.h semantics): the ELF notes, the entry, the hypercall page.

use core::arch::global_asm;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

// Hypercall numbers (public/xen.h).
pub const HYPERVISOR_SET_TRAP_TABLE: usize = 0;
pub const HYPERVISOR_MMU_UPDATE: usize = 1;
pub const HYPERVISOR_SET_CALLBACKS: usize = 4;
const HYPERVISOR_UPDATE_VA_MAPPING: usize = 14;
pub const HYPERVISOR_SET_TIMER_OP: usize = 15;
const HYPERVISOR_XEN_VERSION: usize = 17;
const HYPERVISOR_CONSOLE_IO: usize = 18;
/// The iret stub pushes RAX and jumps to Xen; it never returns to its caller.
pub const HYPERVISOR_IRET: usize = 23;
pub const HYPERVISOR_VCPU_OP: usize = 24;
pub const HYPERVISOR_MMUEXT_OP: usize = 26;
pub const HYPERVISOR_SCHED_OP: usize = 29;
pub const HYPERVISOR_EVENT_CHANNEL_OP: usize = 32;
const CONSOLEIO_WRITE: u64 = 0;
const XENVER_VERSION: u64 = 0;
pub const SCHEDOP_BLOCK: u64 = 1;
const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SCHEDOP_POLL: u64 = 3;
const SHUTDOWN_REBOOT: u32 = 1;
/// update_va_mapping flag: invalidate this one address in the local TLB.
const UVMF_INVLPG: u64 = 2;
/// Present, writable, user (Xen runs a 64-bit PV kernel in ring 3), accessed, dirty.
pub const PTE_FLAGS: u64 = 0x67;
/// "Myself" wherever a domain id is asked for.
pub const DOMID_SELF: u16 = 0x7ff0;
/// The flat 64-bit code selector a PV kernel runs with (arch-x86/xen-x86_64.h).
pub const FLAT_KERNEL_CS: u16 = 0xe033;

// The ELF notes Xen's loader reads (type numbers from elfnote.h: 1 entry, 2 hypercall page,
// 3 virt base, 4 paddr offset, 5 Xen version, 6 guest OS, 7 guest version, 8 loader, 10 features), the
// entry (own stack, start_info to the first argument) and the page Xen fills with stubs.
global_asm!(
    r#"
    .macro xen_note type, descriptor:vararg
    .section .note.Xen, "a"
    .balign 4
    .long 4, 862f - 861f, \type
    .asciz "Xen"
    .balign 4
861: \descriptor
862: .balign 4
    .endm
    xen_note 1, .quad _start
    xen_note 2, .quad hypercall_page
    xen_note 3, .quad 0
    xen_note 4, .quad 0
    xen_note 5, .asciz "xen-3.0"
    xen_note 6, .asciz "ringfence-bench"
    xen_note 7, .asciz "0.1"
    xen_note 8, .asciz "generic"
    xen_note 10, .asciz "dom0"

    .section .text.entry, "ax"
    .global _start
_start:
    lea {stack}+65536(%rip), %rsp
    mov %rsi, %rdi
    call xen_main
    ud2

    .section .text.hypercall_page, "ax"
    .balign 4096
    .global hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc
    "#,
    stack = sym STACK,
    options(att_syntax)
);

#[repr(C, align(16))]
struct Stack([u8; 65_536]);

static mut STACK: Stack = Stack([0; 65_536]);

extern "C" {
    static hypercall_page: u8;
}

/// Calls hypercall `number` through its stub in the hypercall page (arguments in RDI,
/// RSI, RDX, R10: the 64-bit PV convention).
pub fn hypercall4(number: usize, first: u64, second: u64, third: u64, fourth: u64) -> i64 {
    let stub = hypercall_stub(number);
    let result: i64;
    // SAFETY: Xen filled the page with one stub per hypercall (each saves RCX and R11
    // around its SYSCALL); the arguments are valid for the hypercalls this crate makes,
    // each documented at its caller.
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") first => _,
            inlateout("rsi") second => _,
            inlateout("rdx") third => _,
            inlateout("r10") fourth => _,
            lateout("rax") result,
            lateout("rcx") _, lateout("r11") _, lateout("r8") _,
        );
    }
    result
}

/// A hypercall of at most three arguments.
pub fn hypercall(number: usize, first: u64, second: u64, third: u64) -> i64 {
    hypercall4(number, first, second, third, 0)
}

/// A hypercall's result as Xen gives it: 0 for success, else a negative errno.
#[inline(always)]
pub fn status(result: i64) -> Result<(), i64> {
    match result {
        0 => Ok(()),
        error => Err(error),
    }
}

/// Where hypercall `number`'s stub is: 32 bytes each.
pub fn hypercall_stub(number: usize) -> usize {
    core::ptr::addr_of!(hypercall_page) as usize + number * 32
}

/// Xen's version (major << 16 | minor): the cheapest hypercall, the null-hypercall row.
pub fn version() -> i64 {
    hypercall(HYPERVISOR_XEN_VERSION, XENVER_VERSION, 0, 0)
}

/// Ends the run: dom0's shutdown is the machine's, and Xen answers a power-off by halting
/// for ever but a reboot by resetting the machine, which ends QEMU under `-no-reboot`.
pub fn finish() -> ! {
    let reason = SHUTDOWN_REBOOT;
    loop {
        hypercall(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN, core::ptr::addr_of!(reason) as u64, 0);
    }
}

/// Xen's console (com1 for dom0).
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for line in text.split_inclusive('\n') {
            let bytes = line.as_bytes();
            if let Some(body) = bytes.strip_suffix(b"\n") {
                hypercall(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE, body.len() as u64, body.as_ptr() as u64);
                hypercall(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE, 2, b"\r\n".as_ptr() as u64);
            } else {
                hypercall(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE, bytes.len() as u64, bytes.as_ptr() as u64);
            }
        }
        Ok(())
    }
}

/// start_info (public/xen.h) up to the fields this guest reads.
#[repr(C)]
pub struct StartInfo {
    pub magic: [u8; 32],
    pub pages: u64,
    /// Machine address of the shared-info page.
    pub shared_info: u64,
    pub flags: u32,
    pub store_mfn: u64,
    pub store_evtchn: u32,
    /// The console union (dom0: offset and size of its console info).
    pub console: [u64; 2],
    /// Virtual address of the bootstrap L4 table.
    pub pt_base: u64,
    pub page_table_frames: u64,
    /// Virtual address of the pfn -> mfn list of the initial pages.
    pub mfn_list: u64,
    pub module_start: u64,
    pub module_length: u64,
    /// This domain's command line, NUL-terminated.
    pub command_line: [u8; 1024],
}

/// A page of this image that is remapped to the shared-info page.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut SHARED_INFO: Page = Page([0; 4096]);

/// Offsets in shared info (64-byte vcpu_info of vCPU 0 first, 32 of them, then the
/// two-level event bitmaps).
const UPCALL_PENDING: usize = 0;
const UPCALL_MASK: usize = 1;
const PENDING_SELECTOR: usize = 8;
const CR2: usize = 16;
const TIME: usize = 32;
const EVENT_PENDING: usize = 32 * 64;
const EVENT_MASK: usize = EVENT_PENDING + 64 * 8;

/// Where [`SharedInfo::map`] mapped it, for the handlers.
static SHARED: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// The mapped shared-info page (a handler runs only after `map`).
pub fn shared() -> SharedInfo {
    let base = SHARED.load(Ordering::Relaxed);
    assert!(!base.is_null(), "shared info is not mapped yet");
    SharedInfo { base }
}

/// The shared-info page, mapped into this image.
#[derive(Copy, Clone)]
pub struct SharedInfo {
    base: *mut u8,
}

// SAFETY: one vCPU; the page is Xen's and ours, every access is volatile or atomic.
unsafe impl Sync for SharedInfo {}

impl SharedInfo {
    /// Maps the shared-info page (machine address `address`) over [`SHARED_INFO`].
    pub fn map(address: u64) -> SharedInfo {
        let page = core::ptr::addr_of_mut!(SHARED_INFO) as u64;
        let pte = (address & !0xfff) | PTE_FLAGS;
        let result = hypercall(HYPERVISOR_UPDATE_VA_MAPPING, page, pte, UVMF_INVLPG);
        if result != 0 {
            panic!("update_va_mapping of shared info failed: {result}");
        }
        SHARED.store(page as *mut u8, Ordering::Relaxed);
        SharedInfo { base: page as *mut u8 }
    }

    /// vCPU 0's time info.
    pub fn time(self) -> TimeInfo {
        // SAFETY: within the mapped page.
        TimeInfo { base: unsafe { self.base.add(TIME) } }
    }

    /// The faulting address of the last #PF Xen bounced (arch_vcpu_info.cr2).
    #[inline(always)]
    pub fn cr2(self) -> u64 {
        // SAFETY: within the mapped page, 8-byte aligned.
        unsafe { core::ptr::read_volatile(self.base.add(CR2) as *const u64) }
    }

    fn byte(self, offset: usize) -> &'static AtomicU8 {
        // SAFETY: within the mapped page, which stays mapped.
        unsafe { &*(self.base.add(offset) as *const AtomicU8) }
    }

    fn word(self, offset: usize) -> &'static AtomicU64 {
        // SAFETY: within the mapped page, 8-byte aligned, stays mapped.
        unsafe { &*(self.base.add(offset) as *const AtomicU64) }
    }

    /// Sets or clears vCPU 0's upcall mask (masked: no event upcall).
    #[inline(always)]
    pub fn mask_upcalls(self, masked: bool) {
        self.byte(UPCALL_MASK).store(u8::from(masked), Ordering::SeqCst);
    }

    /// Clears vCPU 0's upcall-pending flag and selector (before the bitmaps are scanned).
    pub fn take_upcall(self) {
        self.byte(UPCALL_PENDING).store(0, Ordering::SeqCst);
        self.word(PENDING_SELECTOR).swap(0, Ordering::SeqCst);
    }

    /// Masks or unmasks `port`.
    pub fn mask_port(self, port: u32, masked: bool) {
        let word = self.word(EVENT_MASK + (port as usize / 64) * 8);
        let bit = 1u64 << (port % 64);
        if masked {
            word.fetch_or(bit, Ordering::SeqCst);
        } else {
            word.fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// Clears `port`'s pending bit; true if it was set.
    #[inline(always)]
    pub fn take_pending(self, port: u32) -> bool {
        let bit = 1u64 << (port % 64);
        self.word(EVENT_PENDING + (port as usize / 64) * 8).fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }

    /// Whether `port` is pending.
    pub fn is_pending(self, port: u32) -> bool {
        self.word(EVENT_PENDING + (port as usize / 64) * 8).load(Ordering::SeqCst) & (1u64 << (port % 64)) != 0
    }
}

/// A vCPU's vcpu_time_info in shared info.
#[derive(Copy, Clone)]
pub struct TimeInfo {
    base: *const u8,
}

/// The scale of one time read: `ns = ((cycles << shift) * mul) >> 32`.
#[derive(Copy, Clone)]
pub struct Scale {
    pub mul: u32,
    pub shift: i8,
}

impl Scale {
    /// `nanoseconds` in TSC cycles: the scaling inverted, rounded down (0 if `mul` is 0).
    pub fn cycles_of(self, nanoseconds: u64) -> u64 {
        if self.mul == 0 {
            return 0;
        }
        let scaled = (u128::from(nanoseconds) << 32) / u128::from(self.mul);
        let cycles =
            if self.shift >= 0 { scaled >> self.shift.unsigned_abs() } else { scaled << self.shift.unsigned_abs() };
        u64::try_from(cycles).unwrap_or(u64::MAX)
    }
}

impl TimeInfo {
    /// System time in ns: the version loop (odd or changed = Xen was writing), then
    /// system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        self.now_scaled().0
    }

    /// [`TimeInfo::now`] and the scale it used.
    #[inline(always)]
    pub fn now_scaled(&self) -> (u64, Scale) {
        // SAFETY: `base` points at the mapped shared info's vcpu_time_info (32 bytes).
        unsafe {
            loop {
                let version = core::ptr::read_volatile(self.base as *const u32);
                core::arch::asm!("lfence", options(nostack, preserves_flags));
                let timestamp = core::ptr::read_volatile(self.base.add(8) as *const u64);
                let system = core::ptr::read_volatile(self.base.add(16) as *const u64);
                let mul = core::ptr::read_volatile(self.base.add(24) as *const u32);
                let shift = core::ptr::read_volatile(self.base.add(28) as *const i8);
                let tsc = core::arch::x86_64::_rdtsc();
                core::arch::asm!("lfence", options(nostack, preserves_flags));
                if version & 1 == 0 && core::ptr::read_volatile(self.base as *const u32) == version {
                    let mut delta = tsc.wrapping_sub(timestamp);
                    delta = if shift >= 0 { delta << shift } else { delta >> shift.unsigned_abs() };
                    let now = system.wrapping_add(((u128::from(delta) * u128::from(mul)) >> 32) as u64);
                    return (now, Scale { mul, shift });
                }
            }
        }
    }
}
