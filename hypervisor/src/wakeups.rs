//! Events meet scheduling: raising a port in a domain's shared-info page, waking the
//! domain that waits for it, expiring timers, and keeping the one LAPIC timer armed for
//! the earliest thing the hypervisor must do next (SPEC.md §17–§20). Tickless: nothing
//! is armed when nothing is due.

use crate::machine::{apic, cpu, memory::DirectMap};
use crate::system::{Domain, System};
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
    pub now: u64,
}

impl Wakeups<'_> {
    fn index(&self, domain: u32) -> Option<usize> {
        let index = (domain as usize).checked_sub(1)?;
        (index < self.domains.len() && self.domains[index].memory.is_some()).then_some(index)
    }

    /// Makes domain `index` runnable if it waits for anything.
    pub fn wake_index(&mut self, index: usize) {
        let domain = &mut self.domains[index];
        if matches!(domain.wait, Wait::Nothing) {
            return;
        }
        domain.wait = Wait::Nothing;
        self.scheduler.wake(index, self.now);
    }

    /// Wakes a blocked domain that now has an unmasked event.
    fn wake_if_deliverable(&mut self, index: usize, port: Option<u32>) {
        let domain = &self.domains[index];
        let Some(memory) = domain.memory.as_ref() else { return };
        let wake = match &domain.wait {
            Wait::Nothing => false,
            Wait::Event => upcall::upcall_pending(&DirectMap, memory.shared_info_frame()),
            Wait::Ports(request) => port.is_some_and(|port| request.ports().contains(&port)),
        };
        if wake {
            self.wake_index(index);
        }
    }
}

impl Notify for Wakeups<'_> {
    fn raise(&mut self, domain: u32, port: u32) {
        let Some(index) = self.index(domain) else { return };
        if let Some(memory) = self.domains[index].memory.as_ref() {
            upcall::raise(&mut DirectMap, memory.shared_info_frame(), port);
        }
        self.wake_if_deliverable(index, Some(port));
    }

    fn unmask(&mut self, domain: u32, port: u32) {
        let Some(index) = self.index(domain) else { return };
        if let Some(memory) = self.domains[index].memory.as_ref() {
            upcall::unmask(&mut DirectMap, memory.shared_info_frame(), port);
        }
        self.wake_if_deliverable(index, None);
    }

    fn clear(&mut self, domain: u32, port: u32) {
        let Some(index) = self.index(domain) else { return };
        if let Some(memory) = self.domains[index].memory.as_ref() {
            upcall::clear_port(&mut DirectMap, memory.shared_info_frame(), port);
        }
    }

    fn wake(&mut self, domain: u32) {
        if let Some(index) = self.index(domain) {
            self.wake_index(index);
        }
    }
}

/// Expires every timer and poll deadline due at `now_tsc`: VIRQ_TIMER is raised for an
/// expired `set_timer_op` timer, and its domain woken even without a bound port
/// (SPEC.md §20.2); a poll whose deadline passed ends.
pub(crate) fn expire(system: &mut System, now_tsc: u64) {
    let now_ns = system.clock.now_ns(now_tsc);
    let System { domains, scheduler, events, timers, .. } = system;
    let mut wakeups = Wakeups { domains, scheduler, now: now_tsc };
    let expired: alloc::vec::Vec<usize> = timers.expired(now_ns).collect();
    for index in expired {
        let id = wakeups.domains[index].id;
        events.raise_virq(id, virq::TIMER, &mut wakeups);
        wakeups.wake_index(index);
    }
    for index in 0..wakeups.domains.len() {
        if let Wait::Ports(request) = &wakeups.domains[index].wait {
            if request.deadline_ns != 0 && request.deadline_ns <= now_ns {
                wakeups.wake_index(index);
            }
        }
    }
}

/// Arms the LAPIC timer for the earliest of: a domain timer, a poll deadline, the end of
/// the running domain's slice when another domain is waiting for the CPU. An armed
/// deadline earlier than needed is left alone (its interrupt finds nothing due and
/// re-arms), so most returns to a guest write no MSR.
pub(crate) fn rearm(system: &mut System) {
    let mut earliest_ns = system.timers.earliest();
    for domain in &system.domains {
        if let Wait::Ports(request) = &domain.wait {
            if request.deadline_ns != 0 {
                earliest_ns = Some(earliest_ns.map_or(request.deadline_ns, |now| now.min(request.deadline_ns)));
            }
        }
    }
    let mut earliest = earliest_ns.map(|ns| system.clock.deadline_tsc(ns));
    if system.scheduler.runnable_count() > 1 {
        if let Some(slice_end) = system.scheduler.slice_end() {
            earliest = Some(earliest.map_or(slice_end, |tsc| tsc.min(slice_end)));
        }
    }
    let Some(wanted) = earliest else { return };
    // An armed deadline that has passed has fired (or its interrupt is pending and will
    // find nothing due): it no longer stands for anything, so arm afresh. The idle loop's
    // interrupts arrive in ring 0, where `armed` cannot be cleared.
    let now = cpu::rdtsc();
    if system.armed.is_none_or(|armed| wanted < armed || armed <= now) {
        apic::arm(wanted);
        system.armed = Some(wanted);
    }
}

