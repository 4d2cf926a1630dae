//! Events meet scheduling: raising a port in a domain's shared-info page, waking the
//! domain that waits for it, expiring timers, and keeping the one timer armed for the
//! earliest thing the hypervisor must do next (SPEC.md §17–§20). Tickless: nothing is
//! armed when nothing is due.

use crate::event::channels::Notify;
use crate::event::upcall;
use crate::mm::frames::Frame;
use crate::platform::Platform;
use crate::sched::policy::Scheduler;
use crate::system::{live_index, Domain, System, Wait};
use hypercall_abi::event::virq;

/// `Notify` for the event-channel table: bits go to shared-info pages, waiters wake.
pub(crate) struct Wakeups<'a, P: Platform> {
    pub domains: &'a mut [Domain<P::ExtendedState>],
    pub scheduler: &'a mut Scheduler,
    pub memory: &'a mut P::Memory,
    pub platform: &'a mut P,
}

impl<P: Platform> Wakeups<'_, P> {
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
        let now = self.platform.read_tsc();
        self.scheduler.wake(index, now);
    }
}

impl<P: Platform> Notify for Wakeups<'_, P> {
    fn raise(&mut self, domain: u32, port: u32) {
        let Some((index, shared)) = self.live(domain) else { return };
        let new_upcall = upcall::raise(self.memory, shared, port);
        // A domain sleeps in BLOCK only with `upcall_pending` clear, so the raise that
        // sets it is the one that wakes it; a poller wakes for its listed ports alone.
        let wake = match &self.domains[index].wait {
            Wait::Nothing => false,
            Wait::Event => new_upcall,
            Wait::Ports(request) => request.ports(&self.domains[index].poll_ports).contains(&port),
        };
        if wake {
            self.wake_index(index);
        }
    }

    fn unmask(&mut self, domain: u32, port: u32) {
        // Only the running domain unmasks its own ports, so nobody sleeps here: the
        // upcall, if one became pending, goes out on the way back to the guest.
        if let Some((_, shared)) = self.live(domain) {
            upcall::unmask(self.memory, shared, port);
        }
    }

    fn clear(&mut self, domain: u32, port: u32) {
        if let Some((_, shared)) = self.live(domain) {
            upcall::clear_port(self.memory, shared, port);
        }
    }

    fn wake(&mut self, domain: u32) {
        if let Some(index) = live_index(self.domains, domain) {
            self.wake_index(index);
        }
    }
}

impl<P: Platform> System<P> {
    /// Raises virtual interrupt `number` in domain `id`.
    pub(crate) fn raise_virq(&mut self, id: u32, number: u64) {
        let Self { domains, scheduler, events, memory, platform, .. } = self;
        events.raise_virq(id, number, &mut Wakeups { domains, scheduler, memory, platform });
    }

    /// Expires every timer and poll deadline due at `now_tsc`: VIRQ_TIMER is raised for
    /// an expired `set_timer_op` timer, and its domain woken even without a bound port
    /// (SPEC.md §20.2); a poll whose deadline passed ends.
    pub(crate) fn expire(&mut self, now_tsc: u64) {
        let now_ns = self.clock.now_ns(now_tsc);
        let Self { domains, scheduler, events, timers, poll_deadlines, memory, platform, .. } = self;
        let mut wakeups = Wakeups { domains, scheduler, memory, platform };
        for index in timers.expired(now_ns) {
            let id = wakeups.domains[index].id;
            events.raise_virq(id, virq::TIMER, &mut wakeups);
            // The raise may have woken it already; a domain still awake keeps the expiry
            // for its next BLOCK.
            let domain = &mut wakeups.domains[index];
            if matches!(domain.wait, Wait::Nothing) {
                domain.timer_expired = true;
            }
            wakeups.wake_index(index);
        }
        // A poller woken by a port keeps its deadline until it expires here, harmlessly:
        // only a domain still polling is woken, and a new POLL sets or cancels its own.
        for index in poll_deadlines.expired(now_ns) {
            if matches!(wakeups.domains[index].wait, Wait::Ports(_)) {
                wakeups.wake_index(index);
            }
        }
    }

    /// Arms the timer for [`Self::next_deadline`]. An armed deadline earlier than needed is
    /// left alone (its interrupt finds nothing due and re-arms), so most returns to a guest
    /// write no MSR. Whether one is armed is the platform's to say: its interrupt handler,
    /// in ring 0 or from a guest, disarms.
    ///
    /// Inlined into every return: most find nothing due and need no call.
    #[inline(always)]
    pub(crate) fn rearm(&mut self) {
        if let Some(wanted) = self.next_deadline() {
            self.arm_for(wanted);
        }
    }

    /// Arms the timer for TSC `wanted` unless an earlier deadline is armed already.
    #[inline(never)]
    fn arm_for(&mut self, wanted: u64) {
        if self.platform.timer_armed().is_none_or(|armed| wanted < armed) {
            self.platform.arm_timer(wanted);
        }
    }

    /// The TSC of the earliest thing the hypervisor must do next: a domain timer, a poll
    /// deadline, the end of the running domain's slice when another domain is waiting for
    /// the CPU. The timer is armed for it, and a preemptible hypercall stops for it (SPEC.md
    /// §5.5).
    #[inline(always)]
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let earliest_ns = match (self.timers.earliest(), self.poll_deadlines.earliest()) {
            (Some(timer), Some(poll)) => Some(timer.min(poll)),
            (timer, poll) => timer.or(poll),
        };
        let mut earliest = earliest_ns.map(|ns| self.deadline_cache.tsc(&self.clock, ns));
        if self.scheduler.runnable_count() > 1 {
            if let Some(slice_end) = self.scheduler.slice_end() {
                earliest = Some(earliest.map_or(slice_end, |tsc| tsc.min(slice_end)));
            }
        }
        earliest
    }
}
