//! The machine's boot steps that need more than one device: the memory map into the
//! frame allocator, the late heap, the TSC rate, console input, the banner.

use super::apic::CONSOLE_VECTOR;
use super::memory;
use super::{apic, console, cpu, exit_device, heap, ioapic, pit, pvh, rtc};
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::ABI_VERSION;
use hypervisor::mm::frames::{Frame, FrameAllocator};
use hypervisor::time::calibration::{self, Consensus, Failure};
use hypervisor::time::Clock;

/// Frames above this are not managed (the frame allocator's bitmap covers 4 GiB).
const MANAGED_LIMIT: u64 = (hypervisor::mm::frames::MAX_FRAMES as u64) * 4096;
/// Low memory holds firmware structures; domains never get it.
const LOW_MEMORY_END: u64 = 1 << 20;

extern "C" {
    static __image_end: u8;
}

/// Gives the frame allocator all RAM above 1 MiB, minus the image, the start info and
/// the boot modules. Returns the end of managed RAM and the bytes of RAM in all.
pub fn claim_memory(frames: &mut FrameAllocator, boot_info: &pvh::BootInfo) -> (u64, u64) {
    let mut ram_end = 0;
    let mut ram_bytes = 0;
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

/// Where the TSC frequency comes from: CPUID, or a PIT window that boot's other work runs
/// inside ([`begin_calibration`] to [`calibrate_clock`]).
pub enum TscSource {
    Cpuid,
    Pit(Result<pit::Window, pit::Failure>),
}

/// Opens the calibration window if CPUID does not give the TSC frequency.
pub fn begin_calibration(features: &cpu::Features) -> TscSource {
    match features.tsc_khz {
        Some(_) => TscSource::Cpuid,
        None => TscSource::Pit(pit::begin()),
    }
}

/// Calibration rounds before boot gives up: each asks the PIT for up to
/// [`PIT_WINDOWS_PER_ROUND`] windows, then the RTC for up to [`RTC_SECONDS_PER_ROUND`]
/// seconds, stopping at the first agreement (SPEC.md §19.1).
const CALIBRATION_ROUNDS: u32 = 3;
/// PIT windows per round (each about a millisecond).
const PIT_WINDOWS_PER_ROUND: u32 = 12;
/// RTC seconds per round.
const RTC_SECONDS_PER_ROUND: u32 = 5;

/// The TSC frequency (from CPUID, else calibrated: the PIT window `source` opened and
/// windows of its own until enough agree, else RTC seconds until enough agree) and the
/// clock on it; without any the hypervisor cannot keep time and stops. Every round that
/// ends without agreement is said on the console before the next.
pub fn calibrate_clock(features: &cpu::Features, source: TscSource, entry_tsc: u64) -> (u64, Clock) {
    let (tsc_hz, calibrated) = match (features.tsc_khz, source) {
        (Some((khz, _)), _) => (khz * 1000, None),
        (None, source) => {
            let (hz, reference) = calibrate(source);
            (hz, Some(reference))
        }
    };
    let Some(clock) = Clock::new(entry_tsc, tsc_hz) else {
        hvprintln!("cannot boot: TSC frequency {tsc_hz} Hz is out of range");
        exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
    };
    // A CPUID frequency is in the banner already.
    if let Some(reference) = calibrated {
        hvprintln!(
            "tsc: {} kHz ({reference}: the median of {} agreeing measurements; no cpuid leaf 0x40000010/0x15/0x16)",
            tsc_hz / 1000,
            calibration::AGREEING
        );
    }
    (tsc_hz, clock)
}

/// [`calibrate_clock`] without CPUID: the frequency and the reference it was measured
/// against (`PIT channel 2`, `PIT channel 0`, `RTC seconds`).
fn calibrate(source: TscSource) -> (u64, &'static str) {
    let mut pit_name = "PIT";
    let mut pit_measurements = Consensus::new();
    let mut pit_silent = false;
    match source {
        TscSource::Pit(Ok(window)) => {
            let measured = window.finish();
            if let Ok(calibration) = measured {
                pit_name = calibration.source;
            }
            pit_measurements.record(measured.map(|calibration| calibration.hz));
        }
        TscSource::Pit(Err(failure)) => pit_silent = failure == Failure::Silent,
        TscSource::Cpuid => {}
    }
    let mut rtc_measurements = Consensus::new();
    let mut rtc_silent = false;
    let mut seconds = rtc::Seconds::default();
    for round in 1..=CALIBRATION_ROUNDS {
        if !pit_silent {
            let agreed = calibration::gather(&mut pit_measurements, PIT_WINDOWS_PER_ROUND, || {
                pit::measure().map(|calibration| {
                    pit_name = calibration.source;
                    calibration.hz
                })
            });
            match agreed {
                Ok(hz) => return (hz, pit_name),
                Err(failure) => pit_silent = failure == Failure::Silent,
            }
        }
        if !rtc_silent {
            match calibration::gather(&mut rtc_measurements, RTC_SECONDS_PER_ROUND, || seconds.measure()) {
                Ok(hz) => return (hz, "RTC seconds"),
                Err(failure) => rtc_silent = failure == Failure::Silent,
            }
        }
        if (pit_silent && rtc_silent) || round == CALIBRATION_ROUNDS {
            break;
        }
        hvprintln!(
            "tsc: calibration round {round} of {CALIBRATION_ROUNDS} found no {} agreeing measurements (PIT {}; RTC {}); measuring again",
            calibration::AGREEING,
            Reference(pit_silent, &pit_measurements),
            Reference(rtc_silent, &rtc_measurements)
        );
    }
    hvprintln!(
        "cannot boot: no TSC frequency: no cpuid leaf 0x40000010/0x15/0x16, and no {} agreeing measurements (PIT {}; RTC {})",
        calibration::AGREEING,
        Reference(pit_silent, &pit_measurements),
        Reference(rtc_silent, &rtc_measurements)
    );
    exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
}

/// One reference's measurements for a console message: `absent` when it never counted.
struct Reference<'a>(bool, &'a Consensus);

impl core::fmt::Display for Reference<'_> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reference(true, _) => write!(formatter, "absent (it does not count)"),
            Reference(false, measurements) => write!(formatter, "{}", measurements.describe()),
        }
    }
}

/// Routes COM1's receive interrupt through the I/O APIC to [`CONSOLE_VECTOR`] on this
/// CPU and turns it on (SPEC.md §21.1). Until a domain has the focus, bytes are dropped.
pub fn enable_console_input(frames: &mut FrameAllocator, hypervisor_root: Frame) -> Result<(), &'static str> {
    ioapic::init(frames, hypervisor_root)?;
    ioapic::route_isa_irq(ioapic::COM1_IRQ, CONSOLE_VECTOR, apic::id())?;
    // The pin first: an edge while it is masked would be lost for good.
    ioapic::unmask(ioapic::COM1_IRQ);
    console::enable_receive_interrupt();
    Ok(())
}

/// Gives the heap its late region: contiguous 2 MiB blocks taken before any domain
/// exists, when the allocator's lowest free blocks are still consecutive.
pub fn grow_heap(frames: &mut FrameAllocator) {
    let blocks = heap::LATE_SIZE / (2 << 20);
    let mut taken: Vec<Frame> = Vec::new();
    for _ in 0..blocks {
        match frames.allocate_large() {
            Some(block) => taken.push(block),
            None => break,
        }
    }
    let contiguous =
        taken.len() as u64 == blocks && taken.windows(2).all(|pair| pair[1].address() == pair[0].address() + (2 << 20));
    if !contiguous {
        for block in taken {
            frames.free_large(block);
        }
        hvprintln!(
            "heap: no contiguous {} MiB for the late heap; domains are limited to the 1 MiB early heap",
            heap::LATE_SIZE >> 20
        );
        return;
    }
    let start = memory::virtual_address(taken[0].address()) as *mut u8;
    // SAFETY: the frames were just allocated (so nothing else owns them), are
    // contiguous (checked) and lie below ram_end, which the direct map covers read-write;
    // this runs once on the boot path.
    unsafe { heap::add_late_region(start) };
}

/// The banner: version, RAM and frames, the CPU features in use, the TSC rate.
pub fn print_banner(frames: &FrameAllocator, features: &cpu::Features, ram_bytes: u64) {
    hvprintln!(
        "ringfence {} ABI {}: {} MiB RAM, {} frames managed, {} free",
        env!("CARGO_PKG_VERSION"),
        ABI_VERSION,
        ram_bytes >> 20,
        frames.managed_count(),
        frames.free_count()
    );
    let mut in_use = String::new();
    for (present, name) in [
        (features.no_execute, "NX"),
        (features.smep, "SMEP"),
        (features.smap, "SMAP"),
        (features.umip, "UMIP"),
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
