//! The local APIC: the one-shot timer behind `set_timer`, and end-of-interrupt. x2APIC
//! (registers as MSRs) where CPUID offers it, else xAPIC (registers in the uncached page
//! at the APIC base). The timer runs in TSC-deadline mode where CPUID offers it (the
//! deadline is a TSC value: no conversion, never early); otherwise as a countdown whose
//! rate is measured against the TSC at boot, armed with a margin — and the interrupt
//! handler still compares the clock with the deadline and re-arms when it came early.

use super::cpu::{rdtsc, Features};
use super::paging;
use core::sync::atomic::{fence, AtomicU64, Ordering};
use spin::Once;
use x86_64::registers::model_specific::Msr;

const APIC_BASE_MSR: u32 = 0x1b;
const GLOBAL_ENABLE: u64 = 1 << 11;
const X2APIC_ENABLE: u64 = 1 << 10;
const TSC_DEADLINE_MSR: u32 = 0x6e0;

// Register offsets in the xAPIC page; the x2APIC MSR of each is 0x800 + offset / 16.
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

const MASKED: u32 = 1 << 16;
const TSC_DEADLINE_MODE: u32 = 0b10 << 17;
const SOFTWARE_ENABLE: u32 = 1 << 8;
const DIVIDE_BY_ONE: u32 = 0b1011;

#[derive(Copy, Clone, Debug)]
enum Access {
    X2apic,
    /// The direct-map address of the (uncached) register page.
    Xapic(u64),
}

/// How the timer counts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// IA32_TSC_DEADLINE.
    TscDeadline,
    /// A countdown at `hz`, measured against the TSC.
    OneShot { hz: u64 },
}

struct LocalApic {
    access: Access,
    mode: TimerMode,
}

static APIC: Once<LocalApic> = Once::new();
/// The TSC deadline armed (`u64::MAX`: none). A countdown may end before it.
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);

impl LocalApic {
    fn read(&self, register: u32) -> u32 {
        match self.access {
            // SAFETY: x2APIC mode is on (enabled in `init`), so MSR 0x800 + register/16
            // exists; reading an APIC register has no side effect.
            Access::X2apic => unsafe { Msr::new(0x800 + register / 16).read() as u32 },
            // SAFETY: the register page is mapped uncached at `base` (init) and the offset
            // is one of the registers above, inside the page and 16-byte aligned.
            Access::Xapic(base) => unsafe { ((base + u64::from(register)) as *const u32).read_volatile() },
        }
    }

    fn write(&self, register: u32, value: u32) {
        match self.access {
            // SAFETY: as in `read`; every register written is writable, with the value
            // the SDM defines for the purpose at each call site.
            Access::X2apic => unsafe { Msr::new(0x800 + register / 16).write(u64::from(value)) },
            // SAFETY: as in `read`.
            Access::Xapic(base) => unsafe { ((base + u64::from(register)) as *mut u32).write_volatile(value) },
        }
    }

    fn id(&self) -> u32 {
        match self.access {
            Access::X2apic => self.read(ID),
            Access::Xapic(_) => self.read(ID) >> 24,
        }
    }
}

fn apic() -> &'static LocalApic {
    APIC.get().expect("apic::init ran at boot")
}

/// What `init` found, for the banner.
#[derive(Copy, Clone, Debug)]
pub struct Description {
    pub x2apic: bool,
    pub id: u32,
    pub mode: TimerMode,
}

/// Enables the local APIC with `spurious_vector`, masks LINT0 (the legacy PIC's line)
/// and the error LVT, and programs the timer (disarmed) to raise `timer_vector`. The TSC
/// rate (`tsc_hz`) must be known.
pub fn init(
    features: &Features,
    timer_vector: u8,
    spurious_vector: u8,
    tsc_hz: u64,
) -> Result<Description, &'static str> {
    let mut base_msr = Msr::new(APIC_BASE_MSR);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 processor with an APIC (all of them).
    let base = unsafe { base_msr.read() };
    let access = if features.x2apic {
        // SAFETY: EN and EXTD together are the architectural move to x2APIC mode (a no-op
        // if firmware made it); CPUID offers x2APIC.
        unsafe { base_msr.write(base | GLOBAL_ENABLE | X2APIC_ENABLE) };
        Access::X2apic
    } else {
        if base & GLOBAL_ENABLE == 0 {
            // SAFETY: enabling the APIC at its current base changes nothing else.
            unsafe { base_msr.write(base | GLOBAL_ENABLE) };
        }
        Access::Xapic(paging::map_device(base & 0x000f_ffff_ffff_f000)?)
    };
    let mut apic = LocalApic { access, mode: TimerMode::TscDeadline };
    apic.write(TASK_PRIORITY, 0);
    apic.write(SPURIOUS, SOFTWARE_ENABLE | u32::from(spurious_vector));
    apic.write(LVT_LINT0, MASKED);
    apic.write(LVT_ERROR, MASKED);
    apic.write(DIVIDE_CONFIGURATION, DIVIDE_BY_ONE);
    if features.tsc_deadline {
        apic.write(LVT_TIMER, TSC_DEADLINE_MODE | u32::from(timer_vector));
        // SDM 10.5.4.1: the LVT write must be ordered before a later IA32_TSC_DEADLINE
        // write, which is not serializing.
        fence(Ordering::SeqCst);
    } else {
        let hz = countdown_rate(&apic, timer_vector, tsc_hz);
        if hz == 0 {
            return Err("no TSC-deadline mode, and the APIC timer does not count");
        }
        apic.mode = TimerMode::OneShot { hz };
        apic.write(LVT_TIMER, u32::from(timer_vector));
    }
    let description = Description { x2apic: features.x2apic, id: apic.id(), mode: apic.mode };
    APIC.call_once(|| apic);
    Ok(description)
}

/// The countdown's rate, measured against the TSC over ~5 ms with the timer masked:
/// each count read is dated by the TSC reads around it, the tightest of several kept.
fn countdown_rate(apic: &LocalApic, timer_vector: u8, tsc_hz: u64) -> u64 {
    apic.write(LVT_TIMER, MASKED | u32::from(timer_vector));
    apic.write(INITIAL_COUNT, u32::MAX);
    let sample = || {
        let mut best = (u64::MAX, 0, 0);
        for _ in 0..8 {
            let before = rdtsc();
            let count = apic.read(CURRENT_COUNT);
            let after = rdtsc();
            if after.wrapping_sub(before) < best.0 {
                best = (after.wrapping_sub(before), before / 2 + after / 2, count);
            }
        }
        (best.1, best.2)
    };
    let (start_tsc, start_count) = sample();
    while rdtsc().wrapping_sub(start_tsc) < tsc_hz / 200 {
        core::hint::spin_loop();
    }
    let (end_tsc, end_count) = sample();
    apic.write(INITIAL_COUNT, 0);
    let ticks = u128::from(start_count.wrapping_sub(end_count));
    u64::try_from(ticks * u128::from(tsc_hz) / u128::from(end_tsc.wrapping_sub(start_tsc).max(1))).unwrap_or(0)
}

/// Arms the timer to interrupt when the TSC reaches `deadline` (at once if it has),
/// replacing the previous arming.
pub fn arm(deadline: u64, tsc_hz: u64) {
    let apic = apic();
    DEADLINE.store(deadline, Ordering::Relaxed);
    match apic.mode {
        // SAFETY: TSC-deadline mode is programmed (init); a non-zero value arms the timer
        // (0 would disarm it instead, so a deadline of 0 is 1: long passed either way).
        TimerMode::TscDeadline => unsafe { Msr::new(TSC_DEADLINE_MSR).write(deadline.max(1)) },
        TimerMode::OneShot { hz } => {
            let delta = u128::from(deadline.saturating_sub(rdtsc()));
            let ticks = (delta * u128::from(hz)).div_ceil(u128::from(tsc_hz.max(1)));
            // A margin of 1/4096 against measurement error, and never 0 (which stops the
            // timer). Beyond the counter's range (seconds) it ends early; the handler re-arms.
            let ticks = ticks + (ticks >> 12) + 1;
            apic.write(INITIAL_COUNT, u32::try_from(ticks).unwrap_or(u32::MAX));
        }
    }
}

/// The timer's interrupt: `true` if the armed deadline has passed (the interrupt is the
/// kernel's business), `false` if a countdown ended early (re-armed here).
pub fn timer_interrupt(tsc_hz: u64) -> bool {
    end_of_interrupt();
    let deadline = DEADLINE.load(Ordering::Relaxed);
    if deadline == u64::MAX {
        // Not armed (a stale interrupt): nothing to report.
        return false;
    }
    if rdtsc() >= deadline {
        DEADLINE.store(u64::MAX, Ordering::Relaxed);
        return true;
    }
    arm(deadline, tsc_hz);
    false
}

/// Signals the end of the interrupt being handled (not for the spurious vector).
pub fn end_of_interrupt() {
    apic().write(END_OF_INTERRUPT, 0);
}

/// This processor's APIC id, the I/O APIC's destination.
pub fn id() -> u32 {
    apic().id()
}
