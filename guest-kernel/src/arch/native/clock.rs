//! The monotonic clock: nanoseconds since the PVH entry, from the TSC. Its rate comes
//! from CPUID where the processor or hypervisor states it (leaf 0x40000010, then 0x15,
//! then 0x16), checked against the PIT; or from the PIT alone. A CPUID rate the PIT
//! contradicts by more than [`TOLERANCE_PPM`] is not believed (leaf 0x16 is only the
//! nominal base frequency, and a migrated VM's leaves can be stale): the PIT's rate is
//! used and the banner says so.

use super::console::report;
use super::cpu::{cpuid, rdtsc, Features};
use super::pit;
use core::fmt;
use guest_kernel_core::vdso::clock::ClockParameters;
use spin::Once;

/// How far a CPUID rate may be from the PIT's before the PIT wins.
const TOLERANCE_PPM: u64 = 5_000;
/// PIT windows for a calibration on its own, and for a cross-check.
const CALIBRATION_WINDOWS: u32 = 5;
const CHECK_WINDOWS: u32 = 3;
/// A calibration whose windows disagree by more than this is reported as doubtful.
const DOUBTFUL_SPREAD_PPM: u64 = 10_000;

/// The clock, fixed at boot.
#[derive(Copy, Clone, Debug)]
pub struct Clock {
    /// The TSC at the PVH entry: time zero.
    pub zero: u64,
    /// TSC ticks per second.
    pub hz: u64,
    /// Nanoseconds per TSC tick × 2^32.
    ns_per_tick: u64,
    /// Where `hz` came from, and how it was checked.
    pub source: Source,
}

/// The origin of the TSC rate.
#[derive(Copy, Clone, Debug)]
pub enum Source {
    /// A CPUID leaf, and the PIT's check of it (`None`: the PIT could not check).
    Cpuid { leaf: &'static str, check: Option<pit::Calibration> },
    /// The PIT, and the CPUID rate it overruled, if any.
    Pit { calibration: pit::Calibration, overruled: Option<(&'static str, u64)> },
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TSC {} kHz ", self.hz / 1000)?;
        match self.source {
            Source::Cpuid { leaf, check: Some(check) } => {
                write!(f, "(cpuid {leaf}, the PIT agrees: {} kHz)", check.hz / 1000)
            }
            Source::Cpuid { leaf, check: None } => write!(f, "(cpuid {leaf}, not checked: no precise PIT)"),
            Source::Pit { calibration, overruled } => {
                write!(
                    f,
                    "({}, median of {} windows of 5 ms ({} tried), spread {} ppm",
                    calibration.source, calibration.windows, calibration.attempts, calibration.spread_ppm
                )?;
                if let Some((leaf, hz)) = overruled {
                    write!(f, "; cpuid {leaf} said {} kHz", hz / 1000)?;
                }
                f.write_str(")")
            }
        }
    }
}

static CLOCK: Once<Clock> = Once::new();

/// The TSC rate CPUID states, and the leaf.
fn cpuid_rate(features: &Features) -> Option<(&'static str, u64)> {
    if features.hypervisor.is_some() && cpuid(0x4000_0000, 0).0 >= 0x4000_0010 {
        let khz = cpuid(0x4000_0010, 0).0;
        if khz != 0 {
            return Some(("0x40000010", u64::from(khz) * 1000));
        }
    }
    let basic = cpuid(0, 0).0;
    if basic >= 0x15 {
        let (denominator, numerator, crystal_hz, _) = cpuid(0x15, 0);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            return Some(("0x15", u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator)));
        }
    }
    if basic >= 0x16 {
        let base_mhz = cpuid(0x16, 0).0 & 0xffff;
        if base_mhz != 0 {
            return Some(("0x16", u64::from(base_mhz) * 1_000_000));
        }
    }
    None
}

/// Decides the TSC rate; `zero` is the TSC at the PVH entry.
pub fn init(features: &Features, zero: u64) -> Result<&'static Clock, &'static str> {
    let (hz, source) = match cpuid_rate(features) {
        Some((leaf, hz)) => match pit::calibrate_tsc(CHECK_WINDOWS) {
            Ok(check) if u128::from(check.hz.abs_diff(hz)) * 1_000_000 > u128::from(hz) * u128::from(TOLERANCE_PPM) => {
                // They disagree: measure properly before overruling CPUID.
                let calibration = pit::calibrate_tsc(CALIBRATION_WINDOWS)?;
                (calibration.hz, Source::Pit { calibration, overruled: Some((leaf, hz)) })
            }
            Ok(check) => (hz, Source::Cpuid { leaf, check: Some(check) }),
            Err(_) => (hz, Source::Cpuid { leaf, check: None }),
        },
        None => {
            let calibration = pit::calibrate_tsc(CALIBRATION_WINDOWS)?;
            (calibration.hz, Source::Pit { calibration, overruled: None })
        }
    };
    if let Source::Pit { calibration, .. } = source {
        if calibration.spread_ppm > DOUBTFUL_SPREAD_PPM {
            report!(
                "clock: the PIT's windows disagree by up to {} ppm (a loaded host?); using their median",
                calibration.spread_ppm
            );
        }
    }
    if !(1_000_000..=100_000_000_000).contains(&hz) {
        return Err("the TSC rate is implausible (outside 1 MHz to 100 GHz)");
    }
    let ns_per_tick = u64::try_from((1_000_000_000u128 << 32) / u128::from(hz)).map_err(|_| "TSC rate too low")?;
    Ok(CLOCK.call_once(|| Clock { zero, hz, ns_per_tick, source }))
}

fn clock() -> &'static Clock {
    CLOCK.get().expect("clock::init ran at boot")
}

/// Nanoseconds since the PVH entry.
pub fn now_ns() -> u64 {
    let clock = clock();
    let ticks = rdtsc().saturating_sub(clock.zero);
    u64::try_from((u128::from(ticks) * u128::from(clock.ns_per_tick)) >> 32).unwrap_or(u64::MAX)
}

/// The TSC value at `ns` nanoseconds since the PVH entry, rounded up (a deadline never
/// comes early).
pub fn tsc_at(ns: u64) -> u64 {
    let clock = clock();
    let ticks = (u128::from(ns) * u128::from(clock.hz)).div_ceil(1_000_000_000);
    clock.zero.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
}

/// [`now_ns`]'s formula, for the vDSO: the same product, so the same nanosecond.
pub fn parameters() -> ClockParameters {
    let clock = clock();
    ClockParameters { tsc_base: clock.zero, ns_base: 0, multiplier: clock.ns_per_tick, shift: 0 }
}

/// The TSC rate.
pub fn hz() -> u64 {
    clock().hz
}
