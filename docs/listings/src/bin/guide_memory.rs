//! Guide chapter 5: memory. Grow the domain by 16 frames (`memory_op`), map them in one
//! batch (`mmu_update`), use them, look at them from a second address space, and give
//! them back. Run with `maxmem=` above `mem=`, or there is no room to grow.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::memory::{self, MapBatch, Space};
use guest_rt::println;

guest_rt::entry!(memory_main);

const PAGES: usize = 16;
/// Where this guest maps its new frames: any guest address outside the image, the
/// hypervisor's range and what the hypervisor mapped at creation (SPEC.md §3).
const WINDOW: u64 = 0x0000_5000_0000_0000;

fn memory_main(start: &'static StartInfo) -> u32 {
    match run(start) {
        Ok(()) => 0,
        Err(errno) => {
            println!("memory: {errno:?}");
            1
        }
    }
}

fn run(start: &'static StartInfo) -> Result<(), Errno> {
    // ANCHOR: reservation
    let current = memory::current_reservation()?;
    let maximum = memory::maximum_reservation()?;
    println!("{current} frames populated (nr_pages {}), quota {maximum}", start.nr_pages);
    let mut gfns = [0u64; PAGES];
    let populated = memory::increase_reservation(&mut gfns, 0)?;
    println!("increase_reservation: {populated} new frames, gfns {}..={}", gfns[0], gfns[PAGES - 1]);
    // ANCHOR_END: reservation

    // ANCHOR: map
    let mut batch = MapBatch::new();
    for (index, gfn) in gfns.iter().enumerate() {
        batch.map(WINDOW + index as u64 * PAGE_SIZE, *gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE);
    }
    let result = batch.apply(Space::INITIAL);
    println!("one mmu_update: {} of {} entries done, {:?}", result.done, batch.len(), result.result);
    result.result?;
    // ANCHOR_END: map

    // ANCHOR: use
    for index in 0..PAGES as u64 {
        let word = (WINDOW + index * PAGE_SIZE) as *mut u64;
        // SAFETY: the batch above mapped this page writable; no Rust reference covers it.
        unsafe { word.write_volatile(0x1000 + index) };
    }
    // SAFETY: as above; reading back the last page's first word.
    let last = unsafe { ((WINDOW + (PAGES as u64 - 1) * PAGE_SIZE) as *const u64).read_volatile() };
    let (gfn, flags) = memory::query(Space::INITIAL, WINDOW)?;
    println!("last page holds {last:#x}; {WINDOW:#x} is gfn {} with flags {flags:#x}", gfn.0);
    // ANCHOR_END: use

    // ANCHOR: space
    let other = memory::create_space()?;
    memory::map_page(other, 0x40_0000, gfns[0], 0)?; // read-only, executable
    let (seen, flags) = memory::query(other, 0x40_0000)?;
    println!("address space {}: gfn {} at 0x400000, flags {flags:#x}", other.raw(), seen.0);
    memory::destroy_space(other)?;
    // ANCHOR_END: space

    // ANCHOR: give_back
    let mut unmaps = MapBatch::new();
    for index in 0..PAGES as u64 {
        unmaps.unmap(WINDOW + index * PAGE_SIZE);
    }
    unmaps.apply(Space::INITIAL).result?;
    let released = memory::decrease_reservation(&gfns, 0)?;
    let after = memory::current_reservation()?;
    println!(
        "released {released} frames; {after} populated again; {WINDOW:#x}: {:?}",
        memory::query(Space::INITIAL, WINDOW)
    );
    Ok(())
    // ANCHOR_END: give_back
}
