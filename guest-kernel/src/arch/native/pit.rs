//! The 8254 programmable interval timer, as the reference clock that measures the TSC's
//! rate where CPUID does not give it (QEMU's TCG `-cpu max` does not) and cross-checks it
//! where it does. The PIT counts at 1.193182 MHz on every PC, microvm included.
//!
//! Channel 2 is used where port 0x61 exists (its gate is there and nothing else listens),
//! channel 0 otherwise (microvm without port 0x61); both in mode 0, counting down once from
//! 0xffff, read by latching. Their interrupts go nowhere (the PICs and every I/O APIC pin
//! other than the console's are masked).
//!
//! The host may be loaded: the emulator can stall between two reads of the count. So
//! every window is dated by count changes bracketed tightly by TSC reads (a stalled read
//! makes a wide bracket and loses to a tight one), a window whose brackets are still too
//! wide is thrown away, and the rate is the median of several windows, with their spread
//! reported — a calibration never goes wrong silently.

use super::cpu::rdtsc;
use x86_64::instructions::port::Port;

/// The PIT's counting rate.
pub const PIT_HZ: u64 = 1_193_182;
/// One window: 5 ms of PIT ticks.
const WINDOW_TICKS: u16 = (PIT_HZ / 200) as u16;
/// Count samples that must show a change before the PIT counts as absent.
const START_SAMPLES: u32 = 200_000;
/// Count samples a window may take at most (a PIT far slower than specified).
const WINDOW_SAMPLES: u32 = 50_000_000;
/// A window counts only if the uncertainty of its two ends is below this share of it
/// (parts per million).
const MAX_WINDOW_UNCERTAINTY_PPM: u64 = 2_000;

const COMMAND: u16 = 0x43;
const CHANNEL0: u16 = 0x40;
const CHANNEL2: u16 = 0x42;
const SYSTEM_CONTROL: u16 = 0x61;

fn outb(port: u16, value: u8) {
    // SAFETY: only the PIT's ports (0x40–0x43) and its gate port 0x61 are written here;
    // nothing else in the kernel uses them, and on a machine without them the writes go
    // nowhere.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: reading the PIT's data ports or port 0x61 only advances the PIT's own read
    // sequence, which this module drives.
    unsafe { Port::<u8>::new(port).read() }
}

#[derive(Copy, Clone)]
struct Channel {
    number: u8,
    data: u16,
}

impl Channel {
    /// Mode 0, low then high byte, binary, from 0xffff.
    fn start(self) {
        outb(COMMAND, (self.number << 6) | 0b11_0000);
        outb(self.data, 0xff);
        outb(self.data, 0xff);
    }

    fn count(self) -> u16 {
        outb(COMMAND, self.number << 6);
        let low = inb(self.data);
        let high = inb(self.data);
        u16::from_le_bytes([low, high])
    }
}

/// A change of the count: the middle of the TSC interval that must contain it, that
/// interval's width, and the count after it.
#[derive(Copy, Clone)]
struct Edge {
    tsc: u64,
    width: u64,
    count: u16,
}

/// Watches 8 changes of the count and returns the best-dated one.
fn edge(channel: Channel, samples: &mut u32) -> Option<Edge> {
    let mut best: Option<Edge> = None;
    let mut previous_before = rdtsc();
    let mut previous = channel.count();
    let mut changes = 0;
    while changes < 8 {
        *samples = samples.checked_sub(1)?;
        let before = rdtsc();
        let count = channel.count();
        let after = rdtsc();
        if count != previous {
            changes += 1;
            // The change happened after the previous latch began and before this one ended.
            let width = after.wrapping_sub(previous_before);
            if best.is_none_or(|best| width < best.width) {
                best = Some(Edge { tsc: previous_before + width / 2, width, count });
            }
        }
        previous_before = before;
        previous = count;
    }
    best
}

enum Failure {
    /// The count never changed: there is no PIT.
    Silent,
    /// The window went wrong (a stall past the counter's wrap, brackets too wide).
    Disturbed,
}

/// One window: TSC ticks per PIT tick × 2^32, from two edges ~5 ms apart.
fn window(channel: Channel) -> Result<u64, Failure> {
    channel.start();
    let mut samples = START_SAMPLES;
    let start = edge(channel, &mut samples).ok_or(Failure::Silent)?;
    let mut samples = WINDOW_SAMPLES;
    while start.count.wrapping_sub(channel.count()) < WINDOW_TICKS {
        samples = samples.checked_sub(1).ok_or(Failure::Disturbed)?;
    }
    let end = edge(channel, &mut samples).ok_or(Failure::Disturbed)?;
    let pit_ticks = u64::from(start.count.wrapping_sub(end.count));
    let tsc_ticks = end.tsc.wrapping_sub(start.tsc);
    // A count that wrapped (the emulator stalled for ~50 ms) looks like a huge window.
    if pit_ticks > u64::from(WINDOW_TICKS) * 2 || tsc_ticks == 0 {
        return Err(Failure::Disturbed);
    }
    let uncertainty = (start.width + end.width) / 2;
    if u128::from(uncertainty) * 1_000_000 > u128::from(tsc_ticks) * u128::from(MAX_WINDOW_UNCERTAINTY_PPM) {
        return Err(Failure::Disturbed);
    }
    Ok(u64::try_from((u128::from(tsc_ticks) << 32) / u128::from(pit_ticks)).unwrap_or(u64::MAX))
}

/// A measured TSC rate.
#[derive(Copy, Clone, Debug)]
pub struct Calibration {
    /// The median of the windows.
    pub hz: u64,
    /// Windows that counted, and windows tried.
    pub windows: u32,
    pub attempts: u32,
    /// The largest distance of a counted window from the median, in parts per million.
    pub spread_ppm: u64,
    /// The channel used.
    pub source: &'static str,
}

/// Reads that measure what one read of the count costs.
const COST_READS: u32 = 15;
/// The most PIT ticks one read may take: a window's two edges are each dated to about two
/// reads, which must stay within its [`MAX_WINDOW_UNCERTAINTY_PPM`].
const MAX_TICKS_PER_READ: u64 = WINDOW_TICKS as u64 * MAX_WINDOW_UNCERTAINTY_PPM / 1_000_000 / 2;

/// Most windows one calibration keeps.
const MAX_WINDOWS: usize = 15;

/// Measures the TSC against `wanted` good windows of the PIT (tried up to three times as
/// often). `Err` says why not: no PIT, or a PIT that cannot be read precisely enough.
pub fn calibrate_tsc(wanted: u32) -> Result<Calibration, &'static str> {
    let wanted = wanted.clamp(1, MAX_WINDOWS as u32);
    let control = inb(SYSTEM_CONTROL);
    let (channel, source) = if control != 0xff {
        // Gate channel 2 on (bit 0), the speaker off (bit 1).
        outb(SYSTEM_CONTROL, (control & !0b10) | 0b1);
        (Channel { number: 2, data: CHANNEL2 }, "PIT channel 2")
    } else {
        (Channel { number: 0, data: CHANNEL0 }, "PIT channel 0")
    };
    // Where a read costs more than a window's precision allows (a host that traps every
    // port access at great cost), no window can succeed: say so at once rather than try.
    channel.start();
    let before = channel.count();
    for _ in 0..COST_READS {
        channel.count();
    }
    let cost = u64::from(before.wrapping_sub(channel.count()));
    if cost > MAX_TICKS_PER_READ * u64::from(COST_READS + 1) {
        if control != 0xff {
            outb(SYSTEM_CONTROL, control);
        }
        return Err("the PIT cannot be read precisely enough here (each read takes many of its ticks)");
    }
    let mut rates = [0u64; MAX_WINDOWS];
    let mut windows = 0;
    let mut attempts = 0;
    let mut silent = false;
    while (windows as u32) < wanted && attempts < wanted * 3 {
        attempts += 1;
        match window(channel) {
            Ok(rate) => {
                rates[windows] = rate;
                windows += 1;
            }
            Err(Failure::Silent) => {
                silent = true;
                break;
            }
            Err(Failure::Disturbed) => {}
        }
    }
    if control != 0xff {
        outb(SYSTEM_CONTROL, control);
    }
    if silent {
        return Err("no PIT: its count does not change");
    }
    if windows == 0 {
        return Err("the PIT cannot be read precisely enough here (every window was disturbed)");
    }
    let rates = &mut rates[..windows];
    rates.sort_unstable();
    let median = rates[windows / 2];
    let spread = rates.iter().map(|&rate| rate.abs_diff(median)).max().unwrap_or(0);
    let spread_ppm = u64::try_from(u128::from(spread) * 1_000_000 / u128::from(median.max(1))).unwrap_or(u64::MAX);
    let hz = u64::try_from((u128::from(median) * u128::from(PIT_HZ)) >> 32).unwrap_or(0);
    if !(1_000_000..=100_000_000_000).contains(&hz) {
        return Err("the PIT gives an implausible TSC rate (outside 1 MHz to 100 GHz)");
    }
    Ok(Calibration { hz, windows: windows as u32, attempts, spread_ppm, source })
}
