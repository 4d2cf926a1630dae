//! Conformance: a privileged or faulting instruction in a guest gets the domain killed by
//! the hypervisor. The argument names the instruction; if it returns, the guest reports
//! `FAIL: <x> did not fault` and `Test result: FAILURE`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::words;
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(privileged);

type Attempt = fn(&StartInfo);

const INSTRUCTIONS: &[(&str, Attempt)] = &[
    ("cli", cli),
    ("sti", sti),
    ("hlt", hlt),
    ("mov_cr3", mov_cr3),
    ("lgdt", lgdt),
    ("in", port_in),
    ("out", port_out),
    ("wrmsr", wrmsr),
    ("rdmsr", rdmsr),
    ("page_fault", page_fault),
    ("write_readonly", write_readonly),
    ("ud", ud),
    ("de", de),
    ("int3", int3),
    ("int80", int80),
];

fn privileged(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let wanted = words(start).next().unwrap_or("");
    match INSTRUCTIONS.iter().find(|(name, _)| *name == wanted) {
        Some((name, attempt)) => {
            println!("about to execute {name}");
            attempt(start);
            reporter.fail(format_args!("{name} did not fault"));
        }
        None => {
            let mut known = [""; INSTRUCTIONS.len()];
            for (slot, (name, _)) in known.iter_mut().zip(INSTRUCTIONS) {
                *slot = name;
            }
            reporter.error(format_args!("unknown instruction '{wanted}'; expected one of {known:?}"));
        }
    }
    reporter.finish()
}

// Every attempt below is expected to raise an exception in ring 3 that the hypervisor
// answers by killing the domain. If one does not, it must at least be harmless, so each
// operand is chosen to do nothing bad when the instruction wrongly succeeds.

fn cli(_start: &StartInfo) {
    // SAFETY: ring 3 with IOPL 0: #GP. Wrongly succeeding would only mask interrupts.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) }
}

fn sti(_start: &StartInfo) {
    // SAFETY: ring 3 with IOPL 0: #GP. Wrongly succeeding enables interrupts (IF is 1 already).
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) }
}

fn hlt(_start: &StartInfo) {
    // SAFETY: #GP outside ring 0. Wrongly succeeding halts until the next interrupt.
    unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
}

fn mov_cr3(_start: &StartInfo) {
    // SAFETY: #GP outside ring 0. (Were it to succeed, the guest's own world would end,
    // which is also a visible failure.)
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) 0u64, options(nostack)) }
}

fn lgdt(_start: &StartInfo) {
    let descriptor = [0u8; 10];
    // SAFETY: #GP outside ring 0; the operand is a readable 10-byte pseudo-descriptor.
    unsafe { core::arch::asm!("lgdt [{}]", in(reg) descriptor.as_ptr(), options(nostack, readonly)) }
}

fn port_in(_start: &StartInfo) {
    // SAFETY: #GP with IOPL 0 and no I/O permission bitmap. COM1's receive register: a
    // wrongly permitted read only consumes an input byte.
    unsafe { core::arch::asm!("in al, dx", in("dx") 0x3f8u16, out("al") _, options(nomem, nostack)) }
}

fn port_out(_start: &StartInfo) {
    // SAFETY: #GP as for `in`. Port 0x80 (POST diagnostics) ignores what it is sent, and
    // is deliberately not the exit device at 0xf4.
    unsafe { core::arch::asm!("out dx, al", in("dx") 0x80u16, in("al") 0u8, options(nomem, nostack)) }
}

fn wrmsr(_start: &StartInfo) {
    // SAFETY: #GP outside ring 0. IA32_TSC_AUX (0xc0000103) := 0 would be harmless.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") 0xc000_0103u32, in("eax") 0u32, in("edx") 0u32, options(nomem, nostack))
    }
}

fn rdmsr(_start: &StartInfo) {
    // SAFETY: #GP outside ring 0. IA32_LSTAR: succeeding would leak the hypervisor's
    // system-call entry address.
    unsafe { core::arch::asm!("rdmsr", in("ecx") 0xc000_0082u32, out("eax") _, out("edx") _, options(nomem, nostack)) }
}

fn page_fault(_start: &StartInfo) {
    // SAFETY: 0x1000 is unmapped in every domain: #PF. Nothing is written.
    unsafe { core::arch::asm!("mov {}, qword ptr [{}]", out(reg) _, in(reg) 0x1000u64, options(nostack, readonly)) }
}

fn write_readonly(start: &StartInfo) {
    // SAFETY: the start-info page is mapped read-only: #PF. Written in asm so no Rust
    // reference is written through; the value stored would be the magic it already holds.
    unsafe {
        core::arch::asm!(
            "mov qword ptr [{address}], {value}",
            address = in(reg) start.start_info_address.0,
            value = in(reg) start.magic,
            options(nostack),
        )
    }
}

fn ud(_start: &StartInfo) {
    // SAFETY: raises #UD; nothing else.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
}

fn de(_start: &StartInfo) {
    // SAFETY: divides 1 by 0 in asm (the compiler cannot see or fold it): #DE.
    unsafe {
        core::arch::asm!(
            "xor edx, edx",
            "mov eax, 1",
            "xor ecx, ecx",
            "div ecx",
            out("eax") _, out("ecx") _, out("edx") _,
            options(nomem, nostack),
        )
    }
}

fn int3(_start: &StartInfo) {
    // SAFETY: raises #BP; nothing else.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) }
}

fn int80(_start: &StartInfo) {
    // SAFETY: vector 0x80 is not a gate ring 3 may use: #GP (or, wrongly, an interrupt the
    // hypervisor reflects).
    unsafe { core::arch::asm!("int 0x80", options(nomem, nostack)) }
}
