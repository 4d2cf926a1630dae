//! Guide chapter 6: traps. The guest gives the hypervisor a trap table; exceptions are
//! bounced to its handlers with a frame, and `iret` resumes where the handler says.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::alloc::{alloc_zeroed, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::trap::vector;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::memory::{self, FreeRegion, Space};
use guest_rt::println;
use guest_rt::trap::{self, TrapAction, TrapContext};

guest_rt::entry!(traps);

/// An address nothing is mapped at until the #PF handler maps it.
const LAZY: u64 = 0x0000_6000_0000_0000;
/// The frame the #PF handler maps there.
static SPARE_GFN: AtomicU64 = AtomicU64::new(0);

// ANCHOR: handlers
/// #UD: report, then resume after the 2-byte `ud2`.
fn invalid_opcode(context: &mut TrapContext) -> TrapAction {
    println!("  #UD at {:#x}; skipping the ud2", context.rip());
    context.skip(2);
    TrapAction::Resume
}

/// #BP: `int3` is a trap, so the frame already points after it.
fn breakpoint(context: &mut TrapContext) -> TrapAction {
    println!("  #BP, resuming at {:#x}", context.rip());
    TrapAction::Resume
}

/// #PF: map a frame at the faulting page and run the faulting instruction again.
fn page_fault(context: &mut TrapContext) -> TrapAction {
    let address = context.fault_address();
    println!("  #PF at {address:#x}, error code {:#x}", context.error_code());
    let page = address & !(PAGE_SIZE - 1);
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    if page != LAZY || memory::map_page(Space::INITIAL, page, SPARE_GFN.load(Ordering::Relaxed), flags).is_err() {
        println!("  not a fault this guest expects; crashing");
        guest_rt::hypercall::crash(3);
    }
    TrapAction::Resume
}
// ANCHOR_END: handlers

fn traps(start: &'static StartInfo) -> u32 {
    match run(start) {
        Ok(()) => 0,
        Err(errno) => {
            println!("traps: {errno:?}");
            1
        }
    }
}

fn run(start: &'static StartInfo) -> Result<(), Errno> {
    // ANCHOR: install
    trap::install()?; // set_trap_table: vectors 0..32 -> guest-rt's common entry
    trap::set_handler(vector::INVALID_OPCODE, invalid_opcode)?;
    trap::set_handler(vector::BREAKPOINT, breakpoint)?;
    trap::set_handler(vector::PAGE_FAULT, page_fault)?;
    // ANCHOR_END: install

    // ANCHOR: raise
    println!("ud2:");
    // SAFETY: ud2 raises #UD, whose handler resumes after it; no memory or register changes.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    println!("int3:");
    // SAFETY: int3 raises #BP, whose handler resumes after it.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
    // ANCHOR_END: raise

    // ANCHOR: demand
    // A zeroed page from the heap: the free region's gfns are known (StartInfo::free_gfn).
    let layout = Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the layout is not zero-sized. The page is never freed: it is mapped twice.
    let spare = unsafe { alloc_zeroed(layout) } as u64;
    let gfn = FreeRegion::of(start).gfn_of(spare).ok_or(Errno::ENOMEM)?;
    SPARE_GFN.store(gfn, Ordering::Relaxed);
    println!("write to {LAZY:#x}:");
    // SAFETY: LAZY is unmapped; the write faults, the handler maps gfn there and the
    // write runs again. No Rust reference covers either address.
    unsafe { (LAZY as *mut u64).write_volatile(0x5eed) };
    // SAFETY: `spare` is the same frame at its heap address.
    let through_heap = unsafe { (spare as *const u64).read_volatile() };
    println!("the write landed in gfn {gfn}: the heap page reads {through_heap:#x}");
    Ok(())
    // ANCHOR_END: demand
}
