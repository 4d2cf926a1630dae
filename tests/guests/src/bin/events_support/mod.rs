//! Helpers shared by the event, time, timer and scheduling guests: per-port counting
//! handlers, a two-domain rendezvous over an event channel, a bit-serial value exchange,
//! and the accelerator guess that picks timing bounds.
#![allow(dead_code)] // each guest uses a different part

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::event::status;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events::{self, Port};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::test::Reporter;

/// Ports with a counter (the low ones: the guests open few).
pub const COUNTED_PORTS: usize = 64;

static COUNTS: [AtomicU64; COUNTED_PORTS] = [const { AtomicU64::new(0) }; COUNTED_PORTS];

/// Counts one event on `port` (an [`events::EventHandler`]).
pub fn counting_handler(port: Port) {
    if let Some(counter) = COUNTS.get(port.number() as usize) {
        counter.fetch_add(1, Ordering::AcqRel);
    }
}

/// Events counted on `port` so far.
pub fn count(port: Port) -> u64 {
    COUNTS.get(port.number() as usize).map_or(0, |counter| counter.load(Ordering::Acquire))
}

/// Sets the counting handler on `port`.
pub fn count_on(port: Port) {
    events::set_handler(port, counting_handler);
}

/// `events::init()`, reported; false if the hypervisor refused (the test cannot go on).
pub fn init(reporter: &mut Reporter) -> bool {
    reporter.expect_ok(events::init(), "set_callbacks(event entry, 0)").is_some()
}

/// How long [`connect`] waits for the peer (system time).
pub const PATIENCE_NS: u64 = 60_000_000_000;

/// Connects this domain with `peer` over one interdomain channel. The lower id allocates
/// an unbound port naming the peer (it must come out as `rendezvous`, so the peer knows
/// which to bind) and waits until the peer has bound it; the higher id binds it, retrying
/// (with a yield) while the port does not exist yet (`-EINVAL`). Every domain of a case
/// exists from the start, so `-ESRCH` means the peer is gone: no retry.
pub fn connect(start: &StartInfo, peer: u64, rendezvous: u32) -> Result<Port, &'static str> {
    let give_up = guest_rt::time::now() + PATIENCE_NS;
    if u64::from(start.domain_id) < peer {
        let port = Port::alloc_unbound(peer).map_err(|_| "alloc_unbound(peer) failed")?;
        if port.number() != rendezvous {
            return Err("the rendezvous port came out with another number");
        }
        while guest_rt::time::now() < give_up {
            match port.status() {
                Ok(found) if found.state == status::INTERDOMAIN => return Ok(port),
                Ok(found) if found.state == status::UNBOUND => {
                    let _ = HYPERVISOR.yield_now();
                }
                _ => return Err("the rendezvous port changed state unexpectedly"),
            }
        }
        Err("the peer never bound the rendezvous port")
    } else {
        while guest_rt::time::now() < give_up {
            match Port::bind_interdomain(peer, rendezvous) {
                Ok(port) => return Ok(port),
                Err(Errno::EINVAL) => {
                    let _ = HYPERVISOR.yield_now();
                }
                Err(Errno::ESRCH) => return Err("bind_interdomain(peer, rendezvous): -ESRCH (the peer is gone)"),
                Err(_) => return Err("bind_interdomain(peer, rendezvous) refused"),
            }
        }
        Err("the peer never allocated the rendezvous port")
    }
}

/// Waits (blocking, events on) until `port`'s count reaches `target`; false if the
/// system time passes `deadline_ns` first (a safety net: the caller armed a timer).
pub fn wait_count(port: Port, target: u64, deadline_ns: u64) -> bool {
    let mut reached = false;
    let _ = events::wait_until(|| {
        reached = count(port) >= target;
        reached || guest_rt::time::now() >= deadline_ns
    });
    reached
}

/// A bit-serial link over three interdomain channels: one port says "bit 0", one "bit 1",
/// one acknowledges. Lets two domains exchange u64 values with nothing but events.
#[derive(Clone, Debug)]
pub struct Link {
    /// Raised by the sender for a 0 bit.
    pub zero: Port,
    /// Raised by the sender for a 1 bit.
    pub one: Port,
    /// Raised by the receiver after each bit.
    pub ack: Port,
    /// Bits of each kind already taken by `receive_value`: a bit can arrive before the
    /// receiver starts waiting for it, so the counts are not sampled at the wait.
    taken: Cell<(u64, u64)>,
}

impl Link {
    /// Connects the three ports with `peer` (rendezvous ports `first`, `first + 1`,
    /// `first + 2` on the lower domain) and sets counting handlers.
    pub fn connect(start: &StartInfo, peer: u64, first: u32) -> Result<Self, &'static str> {
        let zero = connect(start, peer, first)?;
        let one = connect(start, peer, first + 1)?;
        let ack = connect(start, peer, first + 2)?;
        for port in [zero, one, ack] {
            count_on(port);
        }
        Ok(Self { zero, one, ack, taken: Cell::new((0, 0)) })
    }

    /// Sends `value`, most significant bit first, waiting for each acknowledgement.
    pub fn send_value(&self, value: u64, deadline_ns: u64) -> bool {
        for bit in (0..64).rev() {
            let acks = count(self.ack);
            let port = if value >> bit & 1 == 1 { self.one } else { self.zero };
            if port.send().is_err() || !wait_count(self.ack, acks + 1, deadline_ns) {
                return false;
            }
        }
        true
    }

    /// Receives a value [`Link::send_value`] sent; `None` past the deadline.
    pub fn receive_value(&self, deadline_ns: u64) -> Option<u64> {
        let mut value = 0u64;
        for _ in 0..64 {
            let (zeros, ones) = self.taken.get();
            let mut bit = None;
            let _ = events::wait_until(|| {
                if count(self.one) > ones {
                    bit = Some(1);
                } else if count(self.zero) > zeros {
                    bit = Some(0);
                }
                bit.is_some() || guest_rt::time::now() >= deadline_ns
            });
            let bit = bit?;
            self.taken.set(if bit == 1 { (zeros, ones + 1) } else { (zeros + 1, ones) });
            value = value << 1 | bit;
            self.ack.send().ok()?;
        }
        Some(value)
    }
}

/// Microseconds with three decimals, for the log.
pub struct Micros(pub u64);

impl core::fmt::Display for Micros {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03} us", self.0 / 1000, self.0 % 1000)
    }
}

/// A time reading that has been away from the CPU over this long, with the time info
/// rewritten meanwhile, was another domain's turn (the shortest slice is 1 ms).
const SWITCH_GAP_NS: u64 = 500_000;
/// Whole rounds [`Turns`] keeps for its median.
pub const KEPT_ROUNDS: usize = 256;

/// What [`Turns::rounds`] reports (system time in ns).
pub struct Rounds {
    pub whole: usize,
    pub shortest: u64,
    pub median: u64,
    pub longest_run: u64,
}

/// Turns this domain gets from the scheduler, seen from inside: the hypervisor rewrites
/// the time info whenever it resumes a domain after another ran (SPEC.md §19.2), so a
/// reading whose info `version` changed across a gap in system time began a new turn. A
/// host that descheduled the emulator makes a gap but no new version; an update that is
/// not a switch (an upcall) makes a version but no gap: neither counts.
///
/// Two spans are measured in system time. A *round* runs from one resumption to the next
/// (the update's own timestamp, the moment the hypervisor resumed this domain): every
/// other runnable domain's turn and this one's, each at least a slice unless it gave up
/// the CPU — what the hypervisor decides, whatever the host does to the emulator. A *run*
/// runs from this domain's first reading in a turn to its last: how long it kept the CPU;
/// a host that deschedules the emulator at either end of a turn makes the run shorter than
/// the turn, never longer.
pub struct Turns {
    version: u32,
    previous: u64,
    resumed: u64,
    run_start: u64,
    /// Turns begun since [`Turns::new`].
    pub count: u64,
    /// Whole rounds, ended since [`Turns::new`] (the first, begun before it, excluded).
    rounds: [u64; KEPT_ROUNDS],
    whole: usize,
    longest_run: u64,
}

impl Turns {
    /// Starts watching; the current turn is not counted.
    pub fn new() -> Self {
        let (info, tsc) = guest_rt::time::read_time(events::shared_info());
        let now = info.system_time_at(tsc);
        Self {
            version: info.version,
            previous: now,
            resumed: 0,
            run_start: 0,
            count: 0,
            rounds: [0; KEPT_ROUNDS],
            whole: 0,
            longest_run: 0,
        }
    }

    /// Reads the time: system time now, and whether this reading began a new turn.
    pub fn read(&mut self) -> (u64, bool) {
        let (info, tsc) = guest_rt::time::read_time(events::shared_info());
        let now = info.system_time_at(tsc);
        let switched = info.version != self.version && now - self.previous >= SWITCH_GAP_NS;
        self.version = info.version;
        if switched {
            if self.count > 0 {
                self.longest_run = self.longest_run.max(self.previous.saturating_sub(self.run_start));
                if self.whole < KEPT_ROUNDS {
                    self.rounds[self.whole] = info.system_time.saturating_sub(self.resumed);
                }
                self.whole += 1;
            }
            self.count += 1;
            self.resumed = info.system_time;
            self.run_start = now;
        }
        self.previous = now;
        (now, switched)
    }

    /// Whole rounds so far, their shortest and median (of the first [`KEPT_ROUNDS`]), and
    /// the longest run of a whole round.
    pub fn rounds(&self) -> Rounds {
        let mut kept = self.rounds;
        let sorted = &mut kept[..self.whole.min(KEPT_ROUNDS)];
        sorted.sort_unstable();
        Rounds {
            whole: self.whole,
            shortest: sorted.first().copied().unwrap_or(0),
            median: guest_rt::tsc::percentile(sorted, 50).unwrap_or(0),
            longest_run: self.longest_run,
        }
    }
}
