//! The 8254 programmable interval timer as a reference clock: TSC calibration when no
//! CPUID leaf gives the frequency (QEMU TCG `-cpu max` has neither 0x40000010 nor
//! 0x15/0x16). The PIT counts at 1.193182 MHz on every PC-compatible machine, microvm
//! included (its `pit=` option defaults to on; under KVM the in-kernel PIT serves it).
//!
//! Channel 2 is used when port 0x61 exists (its gate is bit 0 there, and nothing else
//! listens to channel 2), channel 0 otherwise (microvm under TCG has no port 0x61). Both
//! run in mode 0 (count down once from 0xffff, ~55 ms) and are read by latching the count;
//! the read-back status's OUT bit, which mode 0 raises at terminal count and keeps high,
//! says whether the count wrapped. The interrupt channel 0 raises at terminal count goes
//! nowhere: the PICs are masked and every I/O APIC pin is masked.
//!
//! A calibration is a window between two dated count changes ([`begin`], [`Window::finish`]);
//! boot does its other work inside it, so the window costs boot nothing unless that work
//! ends before the window is long enough for the precision asked.

use super::cpu::rdtsc;
pub use hypervisor::time::calibration::Failure;
use x86_64::instructions::port::Port;

/// Counting rate of the PIT (NTSC colour burst × 3 / 12).
pub const PIT_HZ: u64 = 1_193_182;
/// The window must be at least this many times the two edges' dating intervals together:
/// the frequency's error is then below 1/PRECISION (250 ppm; Linux's quick PIT
/// calibration accepts 500 ppm). Tight edges (a few hundred TSC ticks under QEMU) need
/// well under a millisecond.
const PRECISION: u64 = 4_000;
/// Samples to wait for the counter to move at all: a missing PIT reads a constant.
const START_SAMPLES: u32 = 200_000;
/// Samples before giving up on a window (a PIT far slower than specified, or edges that
/// never get tight enough).
const WINDOW_SAMPLES: u32 = 50_000_000;
/// Where read-back is missing, wraps cannot be seen: only windows shorter than half the
/// count's range are trusted.
const UNCHECKED_TICKS: u16 = 0x8000;

const COMMAND: u16 = 0x43;
const CHANNEL0_DATA: u16 = 0x40;
const CHANNEL2_DATA: u16 = 0x42;
const SYSTEM_CONTROL: u16 = 0x61;
/// Read-back command (bits 7:6), count not latched (bit 5); channel bits 3:1 are added.
const READ_BACK_STATUS: u8 = 0b1110_0000;
/// What the status's low six bits read in the mode `Channel::start` programs: lo/hi byte
/// access (0b11), mode 0, binary.
const STATUS_MODE_0: u8 = 0b11_0000;
const STATUS_OUT: u8 = 1 << 7;

/// A measured TSC frequency and how it was measured.
#[derive(Copy, Clone, Debug)]
pub struct Calibration {
    pub hz: u64,
    pub source: &'static str,
}

#[derive(Copy, Clone)]
struct Channel {
    number: u8,
    data: u16,
}

fn outb(port: u16, value: u8) {
    // SAFETY: only the PIT ports (0x40–0x43) and its gate/speaker port 0x61 are written
    // here; the hypervisor has no other user of them, and on a machine without them the
    // writes go nowhere.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: reading PIT data or port 0x61 has no effect beyond the PIT's own read
    // sequencing, which this module drives.
    unsafe { Port::<u8>::new(port).read() }
}

impl Channel {
    /// Mode 0, lo/hi byte access, binary, counting down from 0xffff.
    fn start(self) {
        outb(COMMAND, (self.number << 6) | 0b11_0000);
        outb(self.data, 0xff);
        outb(self.data, 0xff);
    }

    /// The current count (latch command, then low and high byte).
    fn count(self) -> u16 {
        outb(COMMAND, self.number << 6);
        let low = inb(self.data);
        let high = inb(self.data);
        u16::from_le_bytes([low, high])
    }

    /// Whether the count has reached zero since `start` (OUT high), from the read-back
    /// status; `None` if the PIT does not answer read-back with a status of the mode
    /// programmed.
    fn passed_zero(self) -> Option<bool> {
        outb(COMMAND, READ_BACK_STATUS | (2 << self.number));
        let status = inb(self.data);
        (status & 0x3f == STATUS_MODE_0).then_some(status & STATUS_OUT != 0)
    }
}

/// A calibration window: its start edge dated, the PIT counting.
pub struct Window {
    channel: Channel,
    /// Port 0x61 as found (0xff: absent), restored when the window ends.
    control: u8,
    source: &'static str,
    start: Edge,
}

/// Programs the PIT and dates a first count change: the start of a window that
/// [`Window::finish`] ends.
pub fn begin() -> Result<Window, Failure> {
    let control = inb(SYSTEM_CONTROL);
    let (channel, source) = if control != 0xff {
        // Gate channel 2 on (bit 0), speaker data off (bit 1).
        outb(SYSTEM_CONTROL, (control & !0b10) | 0b1);
        (Channel { number: 2, data: CHANNEL2_DATA }, "PIT channel 2")
    } else {
        (Channel { number: 0, data: CHANNEL0_DATA }, "PIT channel 0")
    };
    channel.start();
    let mut samples = START_SAMPLES;
    match best_edge(channel, &mut samples) {
        Some(start) => Ok(Window { channel, control, source, start }),
        None => {
            restore(control);
            Err(Failure::Silent)
        }
    }
}

fn restore(control: u8) {
    if control != 0xff {
        outb(SYSTEM_CONTROL, control);
    }
}

impl Window {
    /// Ends the window at a count change dated tightly enough for [`PRECISION`] (sampling
    /// on until the window is that long) and returns the frequency. The result is also
    /// refused outside 1 MHz – 100 GHz.
    pub fn finish(self) -> Result<Calibration, Failure> {
        let result = self.measure();
        restore(self.control);
        let (tsc_ticks, pit_ticks) = result?;
        let hz = u128::from(tsc_ticks) * u128::from(PIT_HZ) / u128::from(pit_ticks.max(1));
        match u64::try_from(hz) {
            Ok(hz) if (1_000_000..=100_000_000_000).contains(&hz) => Ok(Calibration { hz, source: self.source }),
            _ => Err(Failure::Disturbed),
        }
    }

    /// (TSC ticks, PIT ticks) between the start edge and an end edge.
    fn measure(&self) -> Result<(u64, u64), Failure> {
        let start = self.start;
        let mut samples = WINDOW_SAMPLES;
        loop {
            let end = best_edge(self.channel, &mut samples).ok_or(Failure::Disturbed)?;
            let elapsed = start.count.wrapping_sub(end.count);
            // Read after the end edge: low OUT means no wrap up to it, so `elapsed` is
            // exact however long boot's work took.
            match self.channel.passed_zero() {
                Some(true) => return Err(Failure::Disturbed),
                Some(false) => {}
                None if elapsed >= UNCHECKED_TICKS => return Err(Failure::Disturbed),
                None => {}
            }
            let tsc_ticks = end.tsc.wrapping_sub(start.tsc);
            let uncertainty = start.width.saturating_add(end.width);
            if elapsed > 0 && uncertainty.saturating_mul(PRECISION) <= tsc_ticks {
                return Ok((tsc_ticks, u64::from(elapsed)));
            }
        }
    }
}

/// Measures the TSC against the PIT in a window of its own (no other work inside): one
/// measurement, which `hypervisor::time::calibration` weighs against others.
pub fn measure() -> Result<Calibration, Failure> {
    begin().and_then(Window::finish)
}

/// A count change: the TSC at the middle of the interval that must contain it, that
/// interval's width, and the count after the change.
#[derive(Copy, Clone)]
struct Edge {
    tsc: u64,
    width: u64,
    count: u16,
}

/// Samples until the count changes `EDGES` times and returns the best-dated change: the
/// change lies between the previous sample's latch and this one's, so inside
/// [previous TSC before, this TSC after]; a sample that stalled (a trapping port access
/// waiting in the emulator) widens that interval and loses to a tighter one.
fn best_edge(channel: Channel, samples: &mut u32) -> Option<Edge> {
    const EDGES: u32 = 8;
    let mut best: Option<Edge> = None;
    let mut previous_before = rdtsc();
    let mut previous_count = channel.count();
    let mut edges = 0;
    while edges < EDGES {
        *samples = samples.checked_sub(1)?;
        let before = rdtsc();
        let count = channel.count();
        let after = rdtsc();
        if count != previous_count {
            edges += 1;
            let width = after.wrapping_sub(previous_before);
            if best.is_none_or(|best| width < best.width) {
                best = Some(Edge { tsc: previous_before + width / 2, width, count });
            }
        }
        previous_before = before;
        previous_count = count;
    }
    best
}
