//! Xen's PV ABI, as much as this guest needs, written once here (public/xen.h, public/elfnote.h,
//! public/sched.h, public/version.h semantics): the ELF notes, the entry, the hypercall page.

use core::arch::global_asm;

const HYPERVISOR_UPDATE_VA_MAPPING: usize = 14;
const HYPERVISOR_CONSOLE_IO: usize = 18;
const HYPERVISOR_XEN_VERSION: usize = 17;
const HYPERVISOR_SCHED_OP: usize = 29;
const CONSOLEIO_WRITE: u64 = 0;
const XENVER_VERSION: u64 = 0;
const SCHEDOP_SHUTDOWN: u64 = 2;
const SHUTDOWN_POWEROFF: u32 = 0;
/// update_va_mapping flag: invalidate this one address in the local TLB.
const UVMF_INVLPG: u64 = 2;
/// Present, writable, user (Xen runs a 64-bit PV kernel in ring 3), accessed, dirty.
const PTE_FLAGS: u64 = 0x67;

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
/// RSI, RDX: the 64-bit PV convention).
fn hypercall(number: usize, first: u64, second: u64, third: u64) -> i64 {
    let stub = core::ptr::addr_of!(hypercall_page) as usize + number * 32;
    let result: i64;
    // SAFETY: Xen filled the page with one stub per hypercall; the arguments are valid
    // for the hypercalls this module makes, each documented at its caller.
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") first => _,
            inlateout("rsi") second => _,
            inlateout("rdx") third => _,
            lateout("rax") result,
            lateout("rcx") _, lateout("r11") _, lateout("r10") _, lateout("r8") _,
        );
    }
    result
}

/// Xen's version (major << 16 | minor): the cheapest hypercall, the null-hypercall row.
pub fn version() -> i64 {
    hypercall(HYPERVISOR_XEN_VERSION, XENVER_VERSION, 0, 0)
}

/// Powers the machine off (dom0's shutdown is the host's).
pub fn power_off() -> ! {
    let reason = SHUTDOWN_POWEROFF;
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

/// The start of start_info (public/xen.h): only the fields before shared_info are read.
#[repr(C)]
pub struct StartInfo {
    pub magic: [u8; 32],
    pub pages: u64,
    /// Machine address of the shared-info page.
    pub shared_info: u64,
}

/// A page of this image that is remapped to the shared-info page.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut SHARED_INFO: Page = Page([0; 4096]);

/// vCPU 0's time info (vcpu_info[0] at offset 0 of shared info, its time at offset 32).
pub struct TimeInfo {
    base: *const u8,
}

impl TimeInfo {
    /// Maps the shared-info page (machine address `address`) over [`SHARED_INFO`].
    pub fn map(address: u64) -> TimeInfo {
        let page = core::ptr::addr_of_mut!(SHARED_INFO) as u64;
        let pte = (address & !0xfff) | PTE_FLAGS;
        let result = hypercall(HYPERVISOR_UPDATE_VA_MAPPING, page, pte, UVMF_INVLPG);
        if result != 0 {
            panic!("update_va_mapping of shared info failed: {result}");
        }
        TimeInfo { base: (page + 32) as *const u8 }
    }

    /// System time in ns: the version loop (odd or changed = Xen was writing), then
    /// system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32.
    #[inline(always)]
    pub fn now(&self) -> u64 {
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
                    return system.wrapping_add(((u128::from(delta) * u128::from(mul)) >> 32) as u64);
                }
            }
        }
    }
}
