//! Boot: the machine's steps (`arch::x86_64`), then the library builds the domains and
//! the first one runs. The boot path is the only one that runs before the system exists.

use crate::arch::x86_64::memory::{self, DirectMap};
use crate::arch::x86_64::platform::Machine;
use crate::arch::x86_64::{
    apic, boot, console, cpu, descriptors, entry, exit_device, extended_state, heap, pvh, rtc, start, trace_port,
};
use crate::entry_points::{drive, FRAMES, SYSTEM};
use hypercall_abi::exit::ExitStatus;
use hypervisor::system::boot::{self as policy, BootModule};
use hypervisor::system::{Start, System};
use hypervisor::time;

/// Called by boot.s on the hypervisor stack with the physical address of the PVH
/// start info.
#[no_mangle]
extern "C" fn hypervisor_main(start_info: u64) -> ! {
    boot_and_run(start_info)
}

/// Boots the machine and runs the first domain; never returns.
fn boot_and_run(start_info_address: u64) -> ! {
    // Read while the boot identity map (where boot.s keeps it) still exists.
    let entry_tsc = boot::entry_tsc();
    console::init();
    cpu::mask_legacy_interrupts();
    heap::init();
    let selectors = descriptors::init();
    let features = cpu::detect();
    // The PIT window (where CPUID gives no TSC frequency) spans the boot work up to
    // `calibrate_clock`: it measures while boot works instead of while boot waits.
    let tsc_source = start::begin_calibration(&features);

    // SAFETY: boot.s passes the address the loader gave in EBX, and the boot tables are
    // still loaded (install_hypervisor_tables runs later).
    let boot_info = match unsafe { pvh::read_boot_info(start_info_address) } {
        Ok(info) => info,
        Err(reason) => {
            hvprintln!("cannot boot: {reason}");
            exit_device::exit(ExitStatus::NOTHING_TO_RUN);
        }
    };
    let (ram_end, ram_bytes) = start::claim_memory(&mut FRAMES.lock(), &boot_info);
    // NX must be on before any table that uses the bit is live.
    cpu::enable_protections(&features);
    let hypervisor_root = memory::install_hypervisor_tables(&mut FRAMES.lock(), ram_end, features.global_pages);
    start::grow_heap(&mut FRAMES.lock());
    cpu::enable_hypercall_entry(
        entry::hypercall_entry_address(),
        selectors.kernel_code,
        selectors.kernel_data,
        selectors.user_code,
        selectors.user_data,
    );

    let extended_state = extended_state::enable(features.xsave && !cpu::under_kvm());
    let apic = match apic::init(&mut FRAMES.lock(), hypervisor_root) {
        Ok(started) => started,
        Err(reason) => {
            hvprintln!("cannot boot: local APIC: {reason}");
            exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
        }
    };
    start::print_banner(&FRAMES.lock(), &features, ram_bytes);
    let rtc_reading = rtc::read_unix_seconds().map(|seconds| (seconds, cpu::rdtsc()));
    let switch_cost = extended_state::measure_switch_cost(&extended_state);

    let (tsc_hz, clock) = start::calibrate_clock(&features, tsc_source, entry_tsc);
    match apic.finish(tsc_hz) {
        Ok(description) => hvprintln!("apic: {description}"),
        Err(reason) => {
            hvprintln!("cannot boot: local APIC: {reason}");
            exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
        }
    }
    let console_input_ready = match start::enable_console_input(&mut FRAMES.lock(), hypervisor_root) {
        Ok(()) => true,
        Err(reason) => {
            hvprintln!("console input: unavailable ({reason}); domains read none");
            false
        }
    };
    let wallclock = match rtc_reading {
        Some((seconds, tsc)) => time::wallclock_base(seconds, clock.now_ns(tsc)),
        None => {
            hvprintln!("rtc: not readable; the wallclock reads 0");
            (0, 0)
        }
    };
    hvprintln!(
        "extended state: {}, {} bytes per domain, switched eagerly ({switch_cost} cycles per save+restore)",
        extended_state.describe(),
        extended_state.area_size(),
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
    if command_line.audit {
        system.start_audit();
    }
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
    if let Some(selection) = &command_line.trace {
        if trace_port::init() {
            system.start_trace(selection);
        } else {
            hvprintln!(
                "trace: no UART answers at COM2 ({:#x}); tracing is off (cargo xtask run --trace attaches one)",
                hypercall_abi::trace::TRACE_PORT
            );
        }
    }
    let mut frame = system.start(console_input_ready);
    *SYSTEM.lock() = Some(system);
    let step = SYSTEM.lock().as_mut().expect("installed above").first_return(&mut frame);
    drive(step, &mut frame);
    entry::run_first(&frame)
}
