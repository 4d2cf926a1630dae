//! The machine half of boot, step by step: console, descriptor tables, the memory map
//! into the frame allocator, the hypervisor's page tables and heap, the TSC, APIC and
//! console input; then the library builds the domains and the first one runs.

use alloc::string::String;
use alloc::vec::Vec;
use crate::entry_points::{drive, FRAMES, SYSTEM};
use hypercall_abi::ABI_VERSION;
use hypercall_abi::exit::ExitStatus;
use hypervisor::mm::frames::Frame;
use hypervisor::system::boot::{self as policy, BootModule};
use hypervisor::system::{Start, System};
use hypervisor::time::{self, Clock};
use super::apic::CONSOLE_VECTOR;
use super::memory::{self, DirectMap};
use super::platform::Machine;
use super::{apic, boot, console, cpu, descriptors, entry, exit_device, extended_state, heap, ioapic, pit, pvh, rtc};

/// Frames above this are not managed (the frame allocator's bitmap covers 4 GiB).
const MANAGED_LIMIT: u64 = (hypervisor::mm::frames::MAX_FRAMES as u64) * 4096;
/// Low memory holds firmware structures; domains never get it.
const LOW_MEMORY_END: u64 = 1 << 20;

extern "C" {
    static __image_end: u8;
}

/// Boots the machine and runs the first domain; never returns.
pub fn boot(start_info_address: u64) -> ! {
    // Read while the boot identity map (where boot.s keeps it) still exists.
    let entry_tsc = boot::entry_tsc();
    console::init();
    cpu::mask_legacy_interrupts();
    heap::init();
    let selectors = descriptors::init();
    let features = cpu::detect();

    // SAFETY: boot.s passes the address the loader gave in EBX, and the boot tables are
    // still loaded (install_hypervisor_tables runs later).
    let boot_info = match unsafe { pvh::read_boot_info(start_info_address) } {
        Ok(info) => info,
        Err(reason) => {
            hvprintln!("cannot boot: {reason}");
            exit_device::exit(ExitStatus::NOTHING_TO_RUN);
        }
    };
    let (ram_end, ram_bytes) = claim_memory(&boot_info);
    // NX must be on before any table that uses the bit is live.
    cpu::enable_protections(&features);
    let hypervisor_root = memory::install_hypervisor_tables(&mut FRAMES.lock(), ram_end, features.global_pages);
    grow_heap();
    cpu::enable_hypercall_entry(
        entry::hypercall_entry_address(),
        selectors.kernel_code,
        selectors.kernel_data,
        selectors.user_code,
        selectors.user_data,
    );

    let extended_state = extended_state::enable(features.xsave && !cpu::under_kvm());
    print_banner(&features, ram_bytes);
    let (tsc_hz, clock) = calibrate_clock(&features, entry_tsc);
    match apic::init(&mut FRAMES.lock(), hypervisor_root, tsc_hz) {
        Ok(description) => hvprintln!("apic: {description}"),
        Err(reason) => {
            hvprintln!("cannot boot: local APIC: {reason}");
            exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
        }
    }
    let console_input_ready = match enable_console_input(hypervisor_root) {
        Ok(()) => true,
        Err(reason) => {
            hvprintln!("console input: unavailable ({reason}); domains read none");
            false
        }
    };
    let wallclock = match rtc::read_unix_seconds() {
        Some(seconds) => time::wallclock_base(seconds, clock.now_ns(cpu::rdtsc())),
        None => {
            hvprintln!("rtc: not readable; the wallclock reads 0");
            (0, 0)
        }
    };
    hvprintln!(
        "extended state: {}, {} bytes per domain, switched eagerly ({} cycles per save+restore)",
        extended_state.describe(),
        extended_state.area_size(),
        extended_state::measure_switch_cost(&extended_state)
    );

    let mut machine = Machine { extended_state };
    let (command_line, slice_ms) = policy::read_command_line(&mut machine, &boot_info.command_line);
    let mut system = System::new(Start {
        platform: machine,
        memory: DirectMap,
        frames: &FRAMES,
        hypervisor_root,
        clock,
        tsc_hz,
        entry_tsc,
        wallclock,
        slice_cycles: tsc_hz / 1000 * slice_ms,
    });
    let module = match boot_info.modules.first() {
        Some(module) if module.start.checked_add(module.size).is_some_and(|end| end <= ram_end) => {
            // SAFETY: the module lies in RAM below ram_end (checked), which the direct map
            // covers; its frames were reserved, so nothing else will write them.
            BootModule::Present(unsafe { memory::physical_slice(module.start, module.size as usize) })
        }
        Some(_) => BootModule::OutsideRam,
        None => BootModule::Missing,
    };
    if let Err(status) = system.load_domains(module, command_line.domains) {
        exit_device::exit(status);
    }
    let mut frame = system.start(console_input_ready);
    *SYSTEM.lock() = Some(system);
    let step = SYSTEM.lock().as_mut().expect("installed above").first_return(&mut frame);
    drive(step, &mut frame);
    entry::run_first(&frame)
}

/// Gives the frame allocator all RAM above 1 MiB, minus the image, the start info and
/// the boot modules. Returns the end of managed RAM and the bytes of RAM in all.
fn claim_memory(boot_info: &pvh::BootInfo) -> (u64, u64) {
    let mut ram_end = 0;
    let mut ram_bytes = 0;
    let mut frames = FRAMES.lock();
    for region in boot_info.memory_map.iter().filter(|region| region.kind == pvh::RAM) {
        ram_bytes += region.end - region.start;
        let start = region.start.max(LOW_MEMORY_END);
        let end = region.end.min(MANAGED_LIMIT);
        if start < end {
            frames.add_region(start, end);
            ram_end = ram_end.max(end);
        }
    }
    // Address of a linker symbol, not dereferenced.
    let image_end = &raw const __image_end as u64 - memory::DIRECT_MAP_BASE;
    frames.reserve(0, image_end);
    frames.reserve(boot_info.start_info_range.0, boot_info.start_info_range.1);
    for module in &boot_info.modules {
        frames.reserve(module.start, module.start.saturating_add(module.size));
    }
    (ram_end, ram_bytes)
}

/// The TSC frequency (from CPUID, else calibrated against the PIT) and the clock on it;
/// without either the hypervisor cannot keep time and stops.
fn calibrate_clock(features: &cpu::Features, entry_tsc: u64) -> (u64, Clock) {
    let (tsc_hz, tsc_source) = match features.tsc_khz {
        Some((khz, source)) => (khz * 1000, source),
        None => match pit::calibrate_tsc() {
            Some(calibration) => (calibration.hz, calibration.source),
            None => {
                hvprintln!("cannot boot: no TSC frequency (no cpuid leaf 0x40000010/0x15/0x16 and no PIT to calibrate against)");
                exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
            }
        },
    };
    let Some(clock) = Clock::new(entry_tsc, tsc_hz) else {
        hvprintln!("cannot boot: TSC frequency {tsc_hz} Hz is out of range");
        exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
    };
    if features.tsc_khz.is_none() {
        hvprintln!("tsc: {} kHz ({tsc_source}; no cpuid leaf 0x40000010/0x15/0x16)", tsc_hz / 1000);
    }
    (tsc_hz, clock)
}

/// Routes COM1's receive interrupt through the I/O APIC to [`CONSOLE_VECTOR`] on this
/// CPU and turns it on (SPEC.md §21.1). Until a domain has the focus, bytes are dropped.
fn enable_console_input(hypervisor_root: Frame) -> Result<(), &'static str> {
    ioapic::init(&mut FRAMES.lock(), hypervisor_root)?;
    ioapic::route_isa_irq(ioapic::COM1_IRQ, CONSOLE_VECTOR, apic::id())?;
    // The pin first: an edge while it is masked would be lost for good.
    ioapic::unmask(ioapic::COM1_IRQ);
    console::enable_receive_interrupt();
    Ok(())
}

/// Gives the heap its late region: contiguous 2 MiB blocks taken before any domain
/// exists, when the allocator's lowest free blocks are still consecutive.
fn grow_heap() {
    let blocks = heap::LATE_SIZE / (2 << 20);
    let mut frames = FRAMES.lock();
    let mut taken: Vec<Frame> = Vec::new();
    for _ in 0..blocks {
        match frames.allocate_large() {
            Some(block) => taken.push(block),
            None => break,
        }
    }
    let contiguous = taken.len() as u64 == blocks
        && taken.windows(2).all(|pair| pair[1].address() == pair[0].address() + (2 << 20));
    if !contiguous {
        for block in taken {
            frames.free_large(block);
        }
        hvprintln!("heap: no contiguous {} MiB for the late heap; domains are limited to the 1 MiB early heap", heap::LATE_SIZE >> 20);
        return;
    }
    let start = memory::virtual_address(taken[0].address()) as *mut u8;
    // SAFETY: the frames were just allocated (so nothing else owns them), are
    // contiguous (checked) and lie below ram_end, which the direct map covers read-write;
    // this runs once on the boot path.
    unsafe { heap::add_late_region(start) };
}

fn print_banner(features: &cpu::Features, ram_bytes: u64) {
    let frames = FRAMES.lock();
    hvprintln!(
        "ringfence {} ABI {}: {} MiB RAM, {} frames managed, {} free",
        env!("CARGO_PKG_VERSION"),
        ABI_VERSION,
        ram_bytes >> 20,
        frames.managed_count(),
        frames.free_count()
    );
    drop(frames);
    let mut in_use = String::new();
    for (present, name) in [
        (features.no_execute, "NX"),
        (features.smep, "SMEP"),
        (features.smap, "SMAP"),
        (features.pcid, "PCID"),
        (features.tsc_deadline, "TSC-deadline"),
        (features.xsave, "XSAVE"),
        (features.invariant_tsc, "invariant-TSC"),
    ] {
        in_use.push_str(if present { " +" } else { " -" });
        in_use.push_str(name);
    }
    hvprintln!("cpu:{in_use}");
    // Without a CPUID frequency, boot calibrates against the PIT and says so itself.
    if let Some((khz, source)) = features.tsc_khz {
        hvprintln!("tsc: {khz} kHz ({source})");
    }
}
