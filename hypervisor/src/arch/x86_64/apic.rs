//! The local APIC: the hypervisor's one timer (tickless, vector [`TIMER_VECTOR`]) and
//! end-of-interrupt. x2APIC (registers as MSRs) when CPUID offers it, else xAPIC
//! (registers in the uncached page `mmio::map_device_page` maps at the APIC base).
//!
//! The timer runs in TSC-deadline mode when CPUID.1:ECX[24] says so (the deadline is a
//! TSC value: no conversion, no drift). Otherwise it is a one-shot countdown at divide-by-1
//! whose rate is CPUID 0x40000010 EBX (KVM) or measured against the TSC while boot does
//! its other work (between [`init`] and [`Started::finish`]): what `arm` needs is exactly the
//! APIC-ticks-per-TSC-tick ratio, so measuring that ratio directly is the most accurate
//! choice. A one-shot can still end a little early if that ratio is off, so the
//! interrupt handler must compare the clock with its deadlines and re-arm, never assume.
//!
//! Nothing here enables interrupts; the hypervisor runs with IF = 0 except in the idle
//! loop's `sti; hlt`.

use super::cpu::{cpuid, rdtsc};
use super::mmio::{self, DevicePage};
use core::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use hypervisor::mm::frames::{Frame, FrameAllocator};
use spin::Once;
use x86_64::registers::model_specific::Msr;

/// The timer's interrupt vector.
pub const TIMER_VECTOR: u8 = 0xef;
/// The spurious-interrupt vector (needs no EOI).
pub const SPURIOUS_VECTOR: u8 = 0xff;

const APIC_BASE_MSR: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const X2APIC_ENABLE: u64 = 1 << 10;
const TSC_DEADLINE_MSR: u32 = 0x6e0;

// Register offsets in the xAPIC page; the x2APIC MSR is 0x800 + offset / 16.
const ID: u32 = 0x20;
const TASK_PRIORITY: u32 = 0x80;
const END_OF_INTERRUPT: u32 = 0xb0;
const SPURIOUS: u32 = 0xf0;
const LVT_TIMER: u32 = 0x320;
const LVT_LINT0: u32 = 0x350;
const LVT_ERROR: u32 = 0x370;
const INITIAL_COUNT: u32 = 0x380;
const CURRENT_COUNT: u32 = 0x390;
const DIVIDE_CONFIGURATION: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
const SOFTWARE_ENABLE: u32 = 1 << 8;
const DIVIDE_BY_ONE: u32 = 0b1011;

#[derive(Copy, Clone, Debug)]
enum Access {
    X2apic,
    Xapic(DevicePage),
}

/// How the timer counts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// IA32_TSC_DEADLINE: the interrupt comes when the TSC reaches the value.
    TscDeadline,
    /// Initial-count countdown at the APIC timer rate.
    OneShot,
}

impl TimerMode {
    pub fn name(self) -> &'static str {
        match self {
            TimerMode::TscDeadline => "TSC-deadline",
            TimerMode::OneShot => "one-shot",
        }
    }
}

/// What `init` found and chose, for the boot banner.
#[derive(Copy, Clone, Debug)]
pub struct Description {
    pub x2apic: bool,
    pub id: u32,
    pub mode: TimerMode,
    /// The one-shot countdown rate in Hz and where it came from.
    pub one_shot_hz: u64,
    pub one_shot_source: &'static str,
}

impl core::fmt::Display for Description {
    /// `x2APIC id 0, timer TSC-deadline (one-shot rate 1000000 kHz, cpuid 0x40000010)`.
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            formatter,
            "{} id {}, timer {} (one-shot rate {} kHz, {})",
            if self.x2apic { "x2APIC" } else { "xAPIC" },
            self.id,
            self.mode.name(),
            self.one_shot_hz / 1000,
            self.one_shot_source
        )
    }
}

struct LocalApic {
    access: Access,
    tsc_hz: u64,
    deadline_supported: bool,
    one_shot_hz: u64,
}

static APIC: Once<LocalApic> = Once::new();
/// The timer mode in force (`TimerMode as u8`), chosen by `init`.
/// What [`armed`] reports; [`NOT_ARMED`] when no interrupt is outstanding.
static ARMED: AtomicU64 = AtomicU64::new(NOT_ARMED);
const NOT_ARMED: u64 = u64::MAX;
static MODE: AtomicU8 = AtomicU8::new(TimerMode::OneShot as u8);

impl LocalApic {
    fn read(&self, register: u32) -> u32 {
        match self.access {
            // SAFETY: x2APIC mode is on (enabled in `init` when CPUID offers it), so the
            // MSR 0x800 + register/16 exists; reading APIC registers has no side effects.
            Access::X2apic => unsafe { Msr::new(0x800 + register / 16).read() as u32 },
            Access::Xapic(page) => page.register(u64::from(register)).read(),
        }
    }

    fn write(&self, register: u32, value: u32) {
        match self.access {
            // SAFETY: as in `read`; every register written here is writable, and the
            // values are the ones the SDM defines for the purpose at each call site.
            Access::X2apic => unsafe { Msr::new(0x800 + register / 16).write(u64::from(value)) },
            Access::Xapic(page) => page.register(u64::from(register)).write(value),
        }
    }
}

fn apic() -> &'static LocalApic {
    APIC.get().expect("apic::init ran at boot")
}

fn mode() -> TimerMode {
    if MODE.load(Ordering::Relaxed) == TimerMode::TscDeadline as u8 {
        TimerMode::TscDeadline
    } else {
        TimerMode::OneShot
    }
}

/// Enables the local APIC (x2APIC if possible), sets the spurious vector, masks LINT0
/// (the legacy PIC's ExtINT line; the PICs are masked anyway) and the error LVT, and
/// starts measuring the one-shot rate where it must be measured. `root` and `frames` are
/// for mapping the xAPIC page. The timer is ready once [`Started::finish`] has the TSC
/// frequency: boot does other work in between, which is the measurement's window.
pub fn init(frames: &mut FrameAllocator, root: Frame) -> Result<Started, &'static str> {
    let (_, _, ecx1, edx1) = cpuid(1, 0);
    if edx1 & (1 << 9) == 0 {
        return Err("no local APIC (CPUID.1:EDX[9])");
    }
    let x2apic = ecx1 & (1 << 21) != 0;
    let deadline_supported = ecx1 & (1 << 24) != 0;
    let mut base_msr = Msr::new(APIC_BASE_MSR);
    // SAFETY: IA32_APIC_BASE exists whenever CPUID reports an APIC.
    let base = unsafe { base_msr.read() };
    let access = if x2apic {
        // SAFETY: setting EN and EXTD together is the architectural xAPIC → x2APIC
        // transition (or a no-op if firmware did it); CPUID says x2APIC exists.
        unsafe { base_msr.write(base | APIC_GLOBAL_ENABLE | X2APIC_ENABLE) };
        Access::X2apic
    } else {
        if base & APIC_GLOBAL_ENABLE == 0 {
            // SAFETY: enabling the APIC at its current base changes nothing else.
            unsafe { base_msr.write(base | APIC_GLOBAL_ENABLE) };
        }
        let physical = base & 0x000f_ffff_ffff_f000;
        let page = mmio::map_device_page(frames, root, physical).ok_or("no frame for the xAPIC page tables")?;
        Access::Xapic(page)
    };
    let apic = LocalApic { access, tsc_hz: 0, deadline_supported, one_shot_hz: 0 };
    apic.write(TASK_PRIORITY, 0);
    apic.write(SPURIOUS, SOFTWARE_ENABLE | u32::from(SPURIOUS_VECTOR));
    apic.write(LVT_LINT0, LVT_MASKED);
    apic.write(LVT_ERROR, LVT_MASKED);
    apic.write(DIVIDE_CONFIGURATION, DIVIDE_BY_ONE);
    let rate = match super::cpu::hypervisor_timing() {
        Some((_, bus_khz)) if bus_khz != 0 => Rate::Known(u64::from(bus_khz) * 1000),
        _ => {
            // Masked, counting down from the top: 4.3 s at 1 GHz, far longer than boot.
            apic.write(LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
            apic.write(INITIAL_COUNT, u32::MAX);
            let (tsc, count) = sample(&apic);
            Rate::Measuring { tsc, count }
        }
    };
    Ok(Started { apic, x2apic, rate })
}

/// A local APIC enabled by [`init`], its timer not yet usable.
pub struct Started {
    apic: LocalApic,
    x2apic: bool,
    rate: Rate,
}

/// The one-shot countdown rate, or where its measurement started.
enum Rate {
    /// From CPUID 0x40000010 (KVM).
    Known(u64),
    /// The free-running count was `count` at TSC `tsc`.
    Measuring { tsc: u64, count: u32 },
}

/// Windows of its own the one-shot rate gets when boot's window outlasted the counter.
const REMEASUREMENTS: u32 = 3;
/// Each of those windows lasts at least this many milliseconds of TSC time.
const REMEASURE_MILLISECONDS: u64 = 5;

/// The counter's rate over the window from (`start_tsc`, `start_count`) to a sample taken
/// once at least `minimum` TSC ticks have passed; the counter is stopped afterwards.
/// `None` when it ran out (reached zero) inside the window or did not move.
fn count_rate(apic: &LocalApic, start_tsc: u64, start_count: u32, tsc_hz: u64, minimum: u64) -> Option<u64> {
    while rdtsc().wrapping_sub(start_tsc) < minimum {
        core::hint::spin_loop();
    }
    let (end_tsc, end_count) = sample(apic);
    apic.write(INITIAL_COUNT, 0);
    // A count that reached zero stopped there: the ticks are unknown.
    if end_count == 0 {
        return None;
    }
    let ticks = u128::from(start_count.wrapping_sub(end_count));
    let hz = ticks * u128::from(tsc_hz) / u128::from(end_tsc.wrapping_sub(start_tsc).max(1));
    u64::try_from(hz).ok().filter(|&hz| hz != 0)
}

/// Reads of the current count before the tightest-bracketed one is kept.
const SAMPLES: u32 = 8;

/// (TSC, current count): each count read is bracketed by TSC reads and dated at their
/// midpoint; of several reads the one with the tightest bracket is kept, since a read
/// that stalls (a trapping access waiting for an emulator lock) samples at an unknown
/// point inside.
fn sample(apic: &LocalApic) -> (u64, u32) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..SAMPLES {
        let before = rdtsc();
        let count = apic.read(CURRENT_COUNT);
        let after = rdtsc();
        if after.wrapping_sub(before) < best.0 {
            best = (after.wrapping_sub(before), before / 2 + after / 2, count);
        }
    }
    (best.1, best.2)
}

impl Started {
    /// Ends the one-shot rate's measurement window (everything boot did since [`init`],
    /// at least ~1 ms) and makes the timer usable (disarmed). `tsc_hz` is the TSC
    /// frequency.
    pub fn finish(self, tsc_hz: u64) -> Result<Description, &'static str> {
        let Started { mut apic, x2apic, rate } = self;
        let (one_shot_hz, one_shot_source) = match rate {
            Rate::Known(hz) => (hz, "cpuid 0x40000010"),
            Rate::Measuring { tsc, count } => {
                // A window far shorter than boot's work only on a machine with nothing
                // else to do: stretch it so the two samples' brackets stay negligible.
                let minimum = (tsc_hz / 1000).max(1);
                match count_rate(&apic, tsc, count, tsc_hz, minimum) {
                    Some(hz) => (hz, "measured against the TSC"),
                    // Boot outlasted the counter's range (4.3 s at 1 GHz: a loaded host
                    // can stretch calibration to seconds of RTC rounds): the ticks are
                    // unknown, so measure again over windows of the timer's own.
                    None => (0..REMEASUREMENTS)
                        .find_map(|_| {
                            apic.write(INITIAL_COUNT, u32::MAX);
                            let (tsc, count) = sample(&apic);
                            count_rate(&apic, tsc, count, tsc_hz, minimum * REMEASURE_MILLISECONDS)
                        })
                        .map_or((0, "not counting"), |hz| {
                            (hz, "measured against the TSC, again: boot outlasted the count")
                        }),
                }
            }
        };
        apic.tsc_hz = tsc_hz;
        apic.one_shot_hz = one_shot_hz;
        let id = match apic.access {
            Access::X2apic => apic.read(ID),
            Access::Xapic(_) => apic.read(ID) >> 24,
        };
        let mode = if apic.deadline_supported { TimerMode::TscDeadline } else { TimerMode::OneShot };
        if one_shot_hz == 0 && mode == TimerMode::OneShot {
            return Err("no TSC-deadline mode and the APIC timer does not count");
        }
        APIC.call_once(|| apic);
        set_mode(mode);
        Ok(Description { x2apic, id, mode, one_shot_hz, one_shot_source })
    }
}

/// Switches the timer between modes (disarming it); `arm` then uses that mode.
/// TSC-deadline is refused (kept one-shot) where CPUID does not offer it.
pub fn set_mode(wanted: TimerMode) {
    let apic = apic();
    disarm();
    let mode = if apic.deadline_supported { wanted } else { TimerMode::OneShot };
    let lvt = match mode {
        TimerMode::TscDeadline => LVT_TSC_DEADLINE | u32::from(TIMER_VECTOR),
        TimerMode::OneShot => u32::from(TIMER_VECTOR),
    };
    apic.write(LVT_TIMER, lvt);
    // SDM 10.5.4.1: the LVT write (an MMIO store in xAPIC mode) must be ordered before a
    // later IA32_TSC_DEADLINE write, which is not serializing.
    fence(Ordering::SeqCst);
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// Programs the timer to interrupt when the TSC reaches `deadline_tsc` (at once if it
/// already has), replacing any earlier arming. In one-shot mode the count is rounded up
/// with a 1/4096 margin; calibration error larger than that can still make it early, so
/// the handler must check the clock.
pub fn arm(deadline_tsc: u64) {
    let apic = apic();
    ARMED.store(deadline_tsc, Ordering::Relaxed);
    match mode() {
        TimerMode::TscDeadline => {
            // SAFETY: TSC-deadline mode is selected (set_mode checked CPUID); writing a
            // non-zero deadline arms the timer and nothing else. 0 would disarm instead.
            unsafe { Msr::new(TSC_DEADLINE_MSR).write(deadline_tsc.max(1)) }
        }
        TimerMode::OneShot => {
            let delta = u128::from(deadline_tsc.saturating_sub(rdtsc()));
            let ticks = (delta * u128::from(apic.one_shot_hz)).div_ceil(u128::from(apic.tsc_hz.max(1)));
            let ticks = ticks + (ticks >> 12) + 1;
            // A deadline beyond the counter's range (4.3 s at 1 GHz) fires at the range's
            // end; the handler re-arms.
            apic.write(INITIAL_COUNT, u32::try_from(ticks).unwrap_or(u32::MAX));
        }
    }
}

/// This CPU's local APIC id (the I/O APIC's physical destination). The xAPIC keeps it in
/// bits 31:24 of the ID register; the x2APIC uses all 32 bits.
pub fn id() -> u32 {
    let apic = apic();
    let raw = apic.read(ID);
    match apic.access {
        Access::X2apic => raw,
        Access::Xapic(_) => raw >> 24,
    }
}

/// Vector of the console (COM1) receive interrupt, routed by the I/O APIC.
pub const CONSOLE_VECTOR: u8 = 0x34;

/// Stops the timer; an interrupt already pending still arrives.
pub fn disarm() {
    match mode() {
        // SAFETY: writing 0 to IA32_TSC_DEADLINE disarms the timer (only in TSC-deadline
        // mode is the MSR in use; CPUID offered it or the mode would not be selected).
        TimerMode::TscDeadline => unsafe { Msr::new(TSC_DEADLINE_MSR).write(0) },
        TimerMode::OneShot => apic().write(INITIAL_COUNT, 0),
    }
}

/// Signals end of interrupt for the one being handled (not for the spurious vector).
pub fn eoi() {
    apic().write(END_OF_INTERRUPT, 0);
}

/// The trap dispatcher's first step for [`TIMER_VECTOR`], in ring 0 (idle) as from a
/// guest: the armed deadline is spent, whether or not it was reached (a one-shot count
/// may end early, or at the end of its range), and end of interrupt lets the next arming
/// interrupt again.
pub fn timer_interrupt() {
    ARMED.store(NOT_ARMED, Ordering::Relaxed);
    eoi();
}

/// The TSC deadline the timer is armed for, until its interrupt is taken.
pub fn armed() -> Option<u64> {
    let armed = ARMED.load(Ordering::Relaxed);
    (armed != NOT_ARMED).then_some(armed)
}
