//! Events meet scheduling: raising a port in a domain's shared-info page, waking the
//! domain that waits for it, expiring timers, and keeping the one LAPIC timer armed for
//! the earliest thing the hypervisor must do next (SPEC.md §17–§20). Tickless: nothing
//! is armed when nothing is due.

use crate::machine::{apic, cpu, memory::DirectMap};
use crate::system::{live_index, Domain, System};
use hypervisor::frame_allocator::Frame;
use hypercall_abi::event::virq;
use hypervisor::event_channel::Notify;
use hypervisor::hypercall::PollRequest;
use hypervisor::scheduler::Scheduler;
use hypervisor::upcall;

/// What a domain that is not running is waiting for. The POLL list is held inline (about
/// 0.5 KiB per domain): boxing it would make going to sleep an allocation that can fail.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default)]
pub(crate) enum Wait {
    /// Not waiting (running or queued).
    #[default]
    Nothing,
    /// `sched_op(BLOCK)`: any unmasked event.
    Event,
    /// `sched_op(POLL)`: one of these ports, or the deadline.
    Ports(PollRequest),
}

/// `Notify` for the event-channel table: bits go to shared-info pages, waiters wake.
pub(crate) struct Wakeups<'a> {
    pub domains: &'a mut [Domain],
    pub scheduler: &'a mut Scheduler,
}

impl Wakeups<'_> {
    /// Domain `id`'s index and shared-info frame, if it is live.
    fn live(&self, id: u32) -> Option<(usize, Frame)> {
        let index = live_index(self.domains, id)?;
        Some((index, self.domains[index].memory.as_ref()?.shared_info_frame()))
    }

    /// Makes domain `index` runnable if it waits for anything.
    pub fn wake_index(&mut self, index: usize) {
        let domain = &mut self.domains[index];
        if matches!(domain.wait, Wait::Nothing) {
            return;
        }
        domain.wait = Wait::Nothing;
        // The TSC only when someone wakes: most event operations wake nobody.
        self.scheduler.wake(index, cpu::rdtsc());
    }
}

impl Notify for Wakeups<'_> {
    fn raise(&mut self, domain: u32, port: u32) {
        let Some((index, shared)) = self.live(domain) else { return };
        let new_upcall = upcall::raise(&mut DirectMap, shared, port);
        // A domain sleeps in BLOCK only with `upcall_pending` clear, so the raise that
        // sets it is the one that wakes it; a poller wakes for its listed ports alone.
        let wake = match &self.domains[index].wait {
            Wait::Nothing => false,
            Wait::Event => new_upcall,
            Wait::Ports(request) => request.ports().contains(&port),
        };
        if wake {
            self.wake_index(index);
        }
    }

    fn unmask(&mut self, domain: u32, port: u32) {
        // Only the running domain unmasks its own ports, so nobody sleeps here: the
        // upcall, if one became pending, goes out on the way back to the guest.
        if let Some((_, shared)) = self.live(domain) {
            upcall::unmask(&mut DirectMap, shared, port);
        }
    }

    fn clear(&mut self, domain: u32, port: u32) {
        if let Some((_, shared)) = self.live(domain) {
            upcall::clear_port(&mut DirectMap, shared, port);
        }
    }

    fn wake(&mut self, domain: u32) {
        if let Some(index) = live_index(self.domains, domain) {
            self.wake_index(index);
        }
    }
}

/// Expires every timer and poll deadline due at `now_tsc`: VIRQ_TIMER is raised for an
/// expired `set_timer_op` timer, and its domain woken even without a bound port
/// (SPEC.md §20.2); a poll whose deadline passed ends.
pub(crate) fn expire(system: &mut System, now_tsc: u64) {
    let now_ns = system.clock.now_ns(now_tsc);
    let System { domains, scheduler, events, timers, poll_deadlines, .. } = system;
    let mut wakeups = Wakeups { domains, scheduler };
    for index in timers.expired(now_ns) {
        let id = wakeups.domains[index].id;
        events.raise_virq(id, virq::TIMER, &mut wakeups);
        wakeups.wake_index(index);
    }
    // A poller woken by a port keeps its deadline until it expires here, harmlessly: only
    // a domain still polling is woken, and a new POLL sets or cancels its own.
    for index in poll_deadlines.expired(now_ns) {
        if matches!(wakeups.domains[index].wait, Wait::Ports(_)) {
            wakeups.wake_index(index);
        }
    }
}

/// Arms the LAPIC timer for the earliest of: a domain timer, a poll deadline, the end of
/// the running domain's slice when another domain is waiting for the CPU. An armed
/// deadline earlier than needed is left alone (its interrupt finds nothing due and
/// re-arms), so most returns to a guest write no MSR. Whether one is armed is the APIC
/// driver's to say: its interrupt handler, in ring 0 or from a guest, disarms.
pub(crate) fn rearm(system: &mut System) {
    let earliest_ns = match (system.timers.earliest(), system.poll_deadlines.earliest()) {
        (Some(timer), Some(poll)) => Some(timer.min(poll)),
        (timer, poll) => timer.or(poll),
    };
    let mut earliest = earliest_ns.map(|ns| system.clock.deadline_tsc(ns));
    if system.scheduler.runnable_count() > 1 {
        if let Some(slice_end) = system.scheduler.slice_end() {
            earliest = Some(earliest.map_or(slice_end, |tsc| tsc.min(slice_end)));
        }
    }
    let Some(wanted) = earliest else { return };
    if apic::armed().is_none_or(|armed| wanted < armed) {
        apic::arm(wanted);
    }
}

