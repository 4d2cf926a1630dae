//! The CMOS real-time clock (ports 0x70/0x71): the date and time at boot, for the
//! wallclock (`wc_sec`/`wc_nsec`), and its seconds as the TSC's fallback reference. Decoding (BCD/binary, 12/24 h) is
//! `hypervisor::time::rtc_unix_seconds`, host-tested.

use super::cpu::rdtsc;
use hypervisor::time::calibration::Failure;
use hypervisor::time::{self, RtcRegisters};
use x86_64::instructions::port::Port;

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
/// Status A: an update is in progress (or starts within 244 µs); the date registers may
/// be mid-change.
const UPDATE_IN_PROGRESS: u8 = 0x80;
/// The PC century register QEMU fills (ACPI FADT `century`).
const CENTURY: u8 = 0x32;
/// An update lasts under 2 ms; this many status reads is far more than that.
const UPDATE_WAIT_READS: u32 = 1_000_000;

fn read(register: u8) -> u8 {
    // SAFETY: selecting a CMOS register (bit 7 clear leaves NMIs as they are) and reading
    // it has no side effect on the clock; nothing else in the hypervisor uses these ports.
    unsafe {
        Port::<u8>::new(INDEX).write(register);
        Port::<u8>::new(DATA).read()
    }
}

fn wait_for_update_to_end() -> bool {
    (0..UPDATE_WAIT_READS).any(|_| read(STATUS_A) & UPDATE_IN_PROGRESS == 0)
}

fn snapshot() -> RtcRegisters {
    RtcRegisters {
        second: read(0x00),
        minute: read(0x02),
        hour: read(0x04),
        day: read(0x07),
        month: read(0x08),
        year: read(0x09),
        century: Some(read(CENTURY)),
    }
}

/// The RTC's time as seconds since 1970 (UTC, as QEMU's RTC runs by default), or `None`
/// without a usable RTC. Reads until two consecutive snapshots taken outside an update
/// agree, so a rollover between fields cannot tear the result.
pub fn read_unix_seconds() -> Option<u64> {
    let mut previous = None;
    for _ in 0..5 {
        if !wait_for_update_to_end() {
            return None;
        }
        let current = snapshot();
        if previous == Some(current) {
            return time::rtc_unix_seconds(current, read(STATUS_B));
        }
        previous = Some(current);
    }
    None
}

/// Samples of the seconds register before a change is given up on: over a second of
/// reads even where each costs a host round trip of a microsecond or less.
const SECOND_SAMPLES: u32 = 20_000_000;
/// A second's two edges must be dated to within 1/PRECISION of it together (250 ppm, as
/// the PIT's windows).
const PRECISION: u64 = 4_000;

/// A change of the seconds register dated with the TSC.
#[derive(Copy, Clone)]
struct Edge {
    /// The TSC at the middle of the interval that must contain the change.
    tsc: u64,
    /// That interval's width.
    width: u64,
    /// The register after the change.
    second: u8,
}

/// The next change of the seconds register. `after` is the previous edge, if this one is
/// to follow it directly: a register no longer showing that edge's value means a change
/// was missed (a stall of over a second between two measurements).
fn second_edge(after: Option<Edge>) -> Result<Edge, Failure> {
    let mut previous_before = rdtsc();
    let previous = read(0x00);
    if after.is_some_and(|edge| edge.second != previous) {
        return Err(Failure::Disturbed);
    }
    for _ in 0..SECOND_SAMPLES {
        let before = rdtsc();
        let second = read(0x00);
        let after = rdtsc();
        if second != previous {
            let width = after.wrapping_sub(previous_before);
            return Ok(Edge { tsc: previous_before + width / 2, width, second });
        }
        previous_before = before;
    }
    Err(Failure::Silent)
}

/// Seconds one measurement may span at most, waiting for a tightly dated change.
const SECONDS_PER_MEASUREMENT: u32 = 4;

/// Successive RTC seconds as measurements of the TSC: the fallback reference when the PIT
/// is missing or never agrees with itself (SPEC.md §19.1). Slow (a second or more each)
/// but independent of the PIT. Under an emulator a change of the seconds register often
/// comes with a stall (the emulator's RTC update holds up the read that sees it), so a
/// measurement runs from the tightest-dated change seen to the next change dated tightly
/// enough, over whole seconds; consecutive measurements share their edges.
#[derive(Default)]
pub struct Seconds {
    last_edge: Option<Edge>,
}

impl Seconds {
    /// TSC ticks per RTC second, between two changes of its seconds register up to
    /// [`SECONDS_PER_MEASUREMENT`] seconds apart. `Silent` without an RTC that counts,
    /// `Disturbed` when no pair of changes was dated tightly enough, a change was missed,
    /// or the result is implausible.
    pub fn measure(&mut self) -> Result<u64, Failure> {
        if read(STATUS_A) == 0xff {
            return Err(Failure::Silent);
        }
        let mut anchor = match self.last_edge.take() {
            Some(edge) => edge,
            None => second_edge(None)?,
        };
        let (mut previous, mut seconds) = (anchor, 0u64);
        for _ in 0..SECONDS_PER_MEASUREMENT {
            let edge = second_edge(Some(previous))?;
            self.last_edge = Some(edge);
            seconds += 1;
            let ticks = edge.tsc.wrapping_sub(anchor.tsc);
            if anchor.width.saturating_add(edge.width).saturating_mul(PRECISION) <= ticks {
                let hz = ticks / seconds;
                return if (1_000_000..=100_000_000_000).contains(&hz) { Ok(hz) } else { Err(Failure::Disturbed) };
            }
            if edge.width < anchor.width {
                (anchor, seconds) = (edge, 0);
            }
            previous = edge;
        }
        Err(Failure::Disturbed)
    }
}
