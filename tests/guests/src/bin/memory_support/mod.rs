//! Helpers shared by the memory conformance guests (`map`, `memory`, `reservation`,
//! `multicall`, `fault_loop`), included with `#[path]`: sub-case dispatch, pages taken
//! from the heap together with their gfns, and volatile access to mapped test windows.
#![allow(dead_code)]

extern crate alloc;

use core::alloc::Layout;

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::StartInfo;
use guest_rt::memory::FreeRegion;
use guest_rt::println;
use guest_rt::test::Reporter;

/// A sub-case: checks on `reporter`.
pub type Case = fn(&mut Reporter, &'static StartInfo);

/// Runs the sub-case named by the first argument word (none or `all`: every one in
/// turn) and prints the verdict.
pub fn run(guest: &str, start: &'static StartInfo, cases: &[(&str, Case)]) -> ! {
    let mut reporter = Reporter::new();
    let wanted = start.cmd_line().split_ascii_whitespace().next();
    let mut ran = false;
    for (name, case) in cases {
        if matches!(wanted, None | Some("all")) || wanted == Some(*name) {
            println!("{guest}: sub-case {name}");
            case(&mut reporter, start);
            ran = true;
        }
    }
    if !ran {
        reporter.error(format_args!("unknown sub-case '{}'", wanted.unwrap_or("")));
    }
    reporter.finish()
}

/// The argument words after the sub-case name.
pub fn extra_words(start: &'static StartInfo) -> core::iter::Skip<core::str::SplitAsciiWhitespace<'static>> {
    start.cmd_line().split_ascii_whitespace().skip(1)
}

/// A page of the heap (inside the free region, so its gfn is known), never freed: the
/// tests map its gfn at other addresses. Returns (address, gfn).
pub fn heap_page(start: &StartInfo) -> (u64, u64) {
    let layout = Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).expect("a page layout");
    // SAFETY: a non-zero-size layout.
    let page = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
    assert!(page != 0, "heap exhausted");
    let gfn = FreeRegion::of(start).gfn_of(page).expect("heap pages lie in the free region");
    (page, gfn)
}

/// Reads the u64 at `address` (which the caller has mapped).
pub fn peek(address: u64) -> u64 {
    // SAFETY: the caller maps `address` before asking; volatile because the same frame is
    // reachable through other addresses the compiler cannot see.
    unsafe { core::ptr::read_volatile(address as *const u64) }
}

/// Writes the u64 at `address` (which the caller has mapped writable).
pub fn poke(address: u64, value: u64) {
    // SAFETY: as for `peek`; no Rust reference covers the test windows.
    unsafe { core::ptr::write_volatile(address as *mut u64, value) }
}

/// Reads the byte at `address`.
pub fn peek_byte(address: u64) -> u8 {
    // SAFETY: as for `peek`.
    unsafe { core::ptr::read_volatile(address as *const u8) }
}

/// Writes the byte at `address`.
pub fn poke_byte(address: u64, value: u8) {
    // SAFETY: as for `poke`.
    unsafe { core::ptr::write_volatile(address as *mut u8, value) }
}

/// What the last trapped fault looked like (see [`install_fault_probe`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Vector.
    pub vector: u64,
    /// Error code.
    pub error_code: u64,
    /// Faulting address (cr2).
    pub address: u64,
    /// Faulting instruction.
    pub rip: u64,
}

mod probe_state {
    use core::sync::atomic::AtomicU64;
    pub static COUNT: AtomicU64 = AtomicU64::new(0);
    pub static VECTOR: AtomicU64 = AtomicU64::new(0);
    pub static ERROR: AtomicU64 = AtomicU64::new(0);
    pub static ADDRESS: AtomicU64 = AtomicU64::new(0);
    pub static RIP: AtomicU64 = AtomicU64::new(0);
    pub static EXEC_TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .text.memory_probes, \"ax\", @progbits",
    // probe_read(address) -> 0 (read done, byte in edx) or 1 (faulted)
    ".global memory_probe_read",
    "memory_probe_read:",
    "xor eax, eax",
    ".global memory_probe_read_instruction",
    "memory_probe_read_instruction:",
    "movzx edx, byte ptr [rdi]",
    "ret",
    // probe_write(address, byte) -> 0 (written) or 1 (faulted)
    ".global memory_probe_write",
    "memory_probe_write:",
    "xor eax, eax",
    ".global memory_probe_write_instruction",
    "memory_probe_write_instruction:",
    "mov byte ptr [rdi], sil",
    "ret",
    // probe_exec(address) -> 0 (the code at address returned) or 1 (fetch faulted)
    ".global memory_probe_exec",
    "memory_probe_exec:",
    "xor eax, eax",
    "call rdi",
    "ret",
    // Where the fault handler resumes a faulted probe: the probe's caller gets 1 (for
    // exec: returns to memory_probe_exec after its call, which returns 1).
    ".global memory_probe_landing",
    "memory_probe_landing:",
    "mov eax, 1",
    "ret",
    ".popsection",
);

#[cfg(target_os = "none")]
extern "C" {
    fn memory_probe_read(address: u64) -> u64;
    fn memory_probe_read_instruction();
    fn memory_probe_write(address: u64, byte: u64) -> u64;
    fn memory_probe_write_instruction();
    fn memory_probe_exec(address: u64) -> u64;
    fn memory_probe_landing();
}

/// The #PF handler of the probes: records the fault; if it happened at a probe's access
/// (or at the target of [`probe_exec`]), resumes at the landing so the probe returns 1.
/// Any other #PF is recorded and reported, and the domain crashes (no landing).
#[cfg(target_os = "none")]
fn probe_fault(context: &mut guest_rt::trap::TrapContext) -> guest_rt::trap::TrapAction {
    use core::sync::atomic::Ordering::SeqCst;
    use probe_state::*;
    COUNT.fetch_add(1, SeqCst);
    VECTOR.store(context.vector(), SeqCst);
    ERROR.store(context.error_code(), SeqCst);
    ADDRESS.store(context.fault_address(), SeqCst);
    RIP.store(context.rip(), SeqCst);
    let rip = context.rip();
    let at_probe = rip == memory_probe_read_instruction as *const () as usize as u64
        || rip == memory_probe_write_instruction as *const () as usize as u64
        || rip == EXEC_TARGET.load(SeqCst);
    if !at_probe {
        println!("memory probe: unexpected {}", guest_rt::trap::ShowFrame(&context.frame));
        guest_rt::hypercall::crash(4);
    }
    context.set_rip(memory_probe_landing as *const () as usize as u64);
    guest_rt::trap::TrapAction::Resume
}

/// Installs the trap entry and the probes' #PF handler.
pub fn install_fault_probe() -> Result<(), guest_rt::abi::Errno> {
    guest_rt::trap::install()?;
    #[cfg(target_os = "none")]
    guest_rt::trap::set_handler(guest_rt::abi::trap::vector::PAGE_FAULT, probe_fault)?;
    Ok(())
}

/// Faults trapped by the probes so far.
pub fn fault_count() -> u64 {
    probe_state::COUNT.load(core::sync::atomic::Ordering::SeqCst)
}

fn last_fault() -> Fault {
    use core::sync::atomic::Ordering::SeqCst;
    use probe_state::*;
    Fault {
        vector: VECTOR.load(SeqCst),
        error_code: ERROR.load(SeqCst),
        address: ADDRESS.load(SeqCst),
        rip: RIP.load(SeqCst),
    }
}

/// Reads a byte at `address`: `Ok(byte)` or `Err(the fault)`.
pub fn probe_read(address: u64) -> Result<u8, Fault> {
    #[cfg(target_os = "none")]
    {
        let byte: u64;
        let faulted: u64;
        // SAFETY: the probe reads one byte; a fault is caught by `probe_fault` (installed
        // by the caller) and turned into the return value 1. The probe clobbers only RAX,
        // RDX and flags, declared here as the C ABI's caller-saved set.
        unsafe {
            core::arch::asm!(
                "call {probe}",
                probe = sym memory_probe_read,
                in("rdi") address,
                lateout("rax") faulted,
                lateout("rdx") byte,
                clobber_abi("C"),
            );
        }
        if faulted == 0 {
            Ok(byte as u8)
        } else {
            Err(last_fault())
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (address, last_fault);
        panic!("probes run only inside a domain")
    }
}

/// Writes `byte` at `address`: `Ok(())` or `Err(the fault)`.
pub fn probe_write(address: u64, byte: u8) -> Result<(), Fault> {
    #[cfg(target_os = "none")]
    {
        // SAFETY: as for `probe_read`; the write goes to a test window no Rust reference
        // covers.
        let faulted = unsafe { memory_probe_write(address, u64::from(byte)) };
        if faulted == 0 {
            Ok(())
        } else {
            Err(last_fault())
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (address, byte);
        panic!("probes run only inside a domain")
    }
}

/// Calls the code at `address` (which should be a `ret`): `Ok(())` or `Err(the fault)`.
pub fn probe_exec(address: u64) -> Result<(), Fault> {
    #[cfg(target_os = "none")]
    {
        use core::sync::atomic::Ordering::SeqCst;
        probe_state::EXEC_TARGET.store(address, SeqCst);
        // SAFETY: the caller placed a `ret` at `address`; a fetch fault there is caught and
        // resumes in the landing, which returns 1 through memory_probe_exec.
        let faulted = unsafe { memory_probe_exec(address) };
        probe_state::EXEC_TARGET.store(u64::MAX, SeqCst);
        if faulted == 0 {
            Ok(())
        } else {
            Err(last_fault())
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = address;
        panic!("probes run only inside a domain")
    }
}

/// The `cr2` the hypervisor wrote into `vcpu_info[0]` of the shared-info page.
pub fn shared_cr2(start: &StartInfo) -> u64 {
    let address = start.shared_info_address.0 + guest_rt::abi::shared_info::cr2_offset(0) as u64;
    peek(address)
}
