//! The 8254 programmable interval timer as a reference clock: TSC calibration when no
//! CPUID leaf gives the frequency (QEMU TCG `-cpu max` has neither 0x40000010 nor
//! 0x15/0x16). The PIT counts at 1.193182 MHz on every PC-compatible machine, microvm
//! included (its `pit=` option defaults to on; under KVM the in-kernel PIT serves it).
//!
//! Channel 2 is used when port 0x61 exists (its gate is bit 0 there, and nothing else
//! listens to channel 2), channel 0 otherwise (microvm under TCG has no port 0x61). Both
//! run in mode 0 (count down once from 0xffff) and are read by latching the count. The
//! interrupt channel 0 raises at terminal count goes nowhere: the PICs are masked and
//! every I/O APIC pin is masked.

use super::cpu::rdtsc;
use x86_64::instructions::port::Port;

/// Counting rate of the PIT (NTSC colour burst × 3 / 12).
pub const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms of PIT ticks.
const WINDOW_TICKS: u16 = (PIT_HZ / 100) as u16;
/// Windows tried before calibration gives up.
const ATTEMPTS: u32 = 5;
/// Samples to wait for the counter to move at all: a missing PIT reads a constant.
const START_SAMPLES: u32 = 200_000;
/// Samples before giving up on the window (a PIT far slower than specified).
const WINDOW_SAMPLES: u32 = 50_000_000;

const COMMAND: u16 = 0x43;
const CHANNEL0_DATA: u16 = 0x40;
const CHANNEL2_DATA: u16 = 0x42;
const SYSTEM_CONTROL: u16 = 0x61;

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
}

/// Measures the TSC against ~10 ms of PIT time. `None` if the PIT does not count or the
/// result is implausible (outside 1 MHz – 100 GHz).
///
/// Each end of the window is a count change dated to within a couple of port accesses
/// (see `best_edge`), so the error is that over 10 ms: tens of ppm under QEMU.
pub fn calibrate_tsc() -> Option<Calibration> {
    let control = inb(SYSTEM_CONTROL);
    let (channel, source) = if control != 0xff {
        // Gate channel 2 on (bit 0), speaker data off (bit 1).
        outb(SYSTEM_CONTROL, (control & !0b10) | 0b1);
        (Channel { number: 2, data: CHANNEL2_DATA }, "PIT channel 2")
    } else {
        (Channel { number: 0, data: CHANNEL0_DATA }, "PIT channel 0")
    };
    // A loaded host can stall the emulator past the counter's wrap in the middle of a
    // window; that attempt is thrown away and the window measured again.
    let mut measured = None;
    for _ in 0..ATTEMPTS {
        channel.start();
        match measure(channel) {
            Ok(ticks) => {
                measured = Some(ticks);
                break;
            }
            // A counter that never moves is no PIT: trying again would only wait again.
            Err(Failure::Silent) => break,
            Err(Failure::Disturbed) => {}
        }
    }
    if control != 0xff {
        outb(SYSTEM_CONTROL, control);
    }
    let (tsc_ticks, pit_ticks) = measured?;
    let hz = u64::try_from(u128::from(tsc_ticks) * u128::from(PIT_HZ) / u128::from(pit_ticks)).ok()?;
    (1_000_000..=100_000_000_000).contains(&hz).then_some(Calibration { hz, source })
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

/// Why a window gave no measurement.
enum Failure {
    /// The counter never moved: there is no PIT.
    Silent,
    /// It moved, but the window went wrong (a stall past the wrap, too few changes).
    Disturbed,
}

/// (TSC ticks, PIT ticks) between two count changes about 10 ms apart.
fn measure(channel: Channel) -> Result<(u64, u64), Failure> {
    let mut samples = START_SAMPLES;
    let start = best_edge(channel, &mut samples).ok_or(Failure::Silent)?;
    let mut samples = WINDOW_SAMPLES;
    loop {
        samples = samples.checked_sub(1).ok_or(Failure::Disturbed)?;
        if start.count.wrapping_sub(channel.count()) >= WINDOW_TICKS {
            break;
        }
    }
    let end = best_edge(channel, &mut samples).ok_or(Failure::Disturbed)?;
    let elapsed = start.count.wrapping_sub(end.count);
    // A count that went up (mode 0 wraps after terminal count, which ~10 ms of a 55 ms
    // count never reaches unless the emulator stalled) shows as a huge elapsed value.
    if elapsed > WINDOW_TICKS * 2 {
        return Err(Failure::Disturbed);
    }
    Ok((end.tsc.wrapping_sub(start.tsc), u64::from(elapsed)))
}
