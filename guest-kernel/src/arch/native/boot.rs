//! The boot path, from `native_boot_main` (called by boot.s in long mode, on the kernel
//! stack, interrupts off) to the kernel's main function: console first, so every later
//! failure is reported; descriptor tables before the boot tables go; the memory map,
//! the kernel's page tables and the heap; the processor's protections, system calls and
//! extended state; the clock, the APIC timer and console input; the wallclock.

use super::console::{self, report};
use super::cpu::{self, Features};
use super::ending::Ending;
use super::paging::{self, BootFrames, ImageLayout, DIRECT_MAP_BASE};
use super::pvh::{self, COMMAND_LINE_BYTES};
use super::ranges::Range;
use super::{apic, clock, descriptors, extended_state, heap, ioapic, rtc, traps, Native, State};
use crate::arch::machine::BootInfo;

extern "C" {
    static native_layout: ImageLayout;
    fn native_syscall_entry();
}

/// Low memory holds the loader's and firmware's structures; the kernel leaves it alone.
const LOW_MEMORY_END: u64 = 1 << 20;

/// The command line, copied out of the loader's memory.
static COMMAND_LINE: spin::Once<[u8; COMMAND_LINE_BYTES]> = spin::Once::new();

/// Stops a boot that cannot finish, saying why.
fn cannot_boot(reason: &str) -> ! {
    report!("cannot boot: {reason}");
    super::end(Ending::Crash, 1)
}

/// Boots, runs `main` and powers off with its result. `start_info` is the PVH start
/// info's physical address, `entry_tsc` the TSC at the PVH entry.
pub fn start(start_info: u64, entry_tsc: u64, main: fn(&'static Native) -> u32) -> ! {
    console::init();
    cpu::set_control_registers();
    if let Err(reason) = descriptors::init() {
        cannot_boot(reason);
    }
    let features = Features::detect();

    let mut command_line = [0u8; COMMAND_LINE_BYTES];
    let (info, command_line_length) = match pvh::read_boot_info(start_info, &mut command_line) {
        Ok(read) => read,
        Err(reason) => cannot_boot(reason),
    };
    // SAFETY: boot.s's table of linker-script values, in the image's rodata.
    let layout = unsafe { native_layout };
    let [boot_code, image] = layout.physical_ranges();
    let mut free = info.ram.clone();
    let reserved = [
        Some(Range::new(0, LOW_MEMORY_END)),
        Some(boot_code),
        Some(image),
        info.initramfs,
        Some(Range::new(paging::DIRECT_MAP_LIMIT, u64::MAX)),
    ];
    for range in reserved.into_iter().flatten() {
        if free.remove(range).is_err() {
            cannot_boot("the memory map has too many pieces");
        }
    }
    free.align_inward(4096);
    let mut frames = BootFrames { free: &mut free, taken: 0 };
    if let Err(reason) = paging::install_kernel_tables(&info.ram, &mut frames, &layout) {
        cannot_boot(reason);
    }
    let table_pages = frames.taken;
    // SAFETY: once, before any allocation; `free` is RAM minus low memory, the image, the
    // initramfs and the page-table frames just taken, all inside the direct map the new
    // tables cover, and nothing else uses it from now on.
    let heap_bytes = unsafe { heap::init(&free) };

    cpu::enable_protections(&features);
    if let Err(reason) = cpu::enable_system_calls(
        native_syscall_entry as *const () as u64,
        x86_64::structures::gdt::SegmentSelector(descriptors::KERNEL_CODE),
        x86_64::structures::gdt::SegmentSelector(descriptors::KERNEL_DATA),
        x86_64::structures::gdt::SegmentSelector(descriptors::USER_CODE),
        x86_64::structures::gdt::SegmentSelector(descriptors::USER_DATA),
    ) {
        cannot_boot(reason);
    }
    let extended = extended_state::init(&features).unwrap_or_else(|reason| cannot_boot(reason));

    traps::mask_legacy_controllers();
    let clock = clock::init(&features, entry_tsc).unwrap_or_else(|reason| cannot_boot(reason));
    let apic = apic::init(&features, traps::TIMER_VECTOR, traps::SPURIOUS_VECTOR, clock.hz)
        .unwrap_or_else(|reason| cannot_boot(reason));
    // The pin first, then the UART: an edge while the pin is masked would be lost.
    if let Err(reason) = ioapic::route(ioapic::COM1_IRQ, traps::CONSOLE_VECTOR, apic.id) {
        cannot_boot(reason);
    }
    console::enable_input();
    let wallclock =
        rtc::unix_seconds().map(|seconds| seconds.saturating_mul(1_000_000_000).saturating_sub(clock::now_ns()));

    let command_line = COMMAND_LINE.call_once(|| command_line);
    // ASCII only (pvh.rs), so always UTF-8.
    let command_line = core::str::from_utf8(&command_line[..command_line_length]).unwrap_or("");
    let initramfs: &'static [u8] = match info.initramfs {
        // SAFETY: the module lies in RAM (pvh.rs checked), which the direct map covers; it
        // is kept out of the heap and page tables, so nothing writes it for the rest of
        // the run.
        Some(range) => unsafe {
            core::slice::from_raw_parts((DIRECT_MAP_BASE + range.start) as *const u8, range.size() as usize)
        },
        None => &[],
    };
    let boot_info = BootInfo { domain_id: None, memory_bytes: info.ram.total(), command_line, initramfs };
    let native = super::install(State {
        boot_info,
        features,
        apic,
        clock: *clock,
        extended: *extended,
        heap_bytes,
        table_pages,
        modules: info.modules,
        wallclock_at_boot_ns: wallclock,
    });
    let code = main(native);
    super::end(Ending::PowerOff, code)
}
