//! How a domain ends: killed, or by its own shutdown; its ports, timers, memory and
//! console focus are released. When the last has ended, the run's summary.

use crate::domain::outcome::{self, Outcome};
use crate::platform::{say, Platform};
use crate::system::audit::{Audit, Counts};
use crate::system::wakeups::Wakeups;
use crate::system::System;
use crate::system::Wait;
use hypercall_abi::exit::ExitStatus;

impl<P: Platform> System<P> {
    /// Kills the running domain, saying why.
    pub(crate) fn kill_current(&mut self, reason: &str) {
        let domain = &self.domains[self.current];
        say!(self.platform, "d{} {}: killed: {}", domain.id, domain.name, reason);
        self.end_current(Outcome::Killed);
    }

    /// Releases the current domain's ports, timers and memory and records how it ended.
    pub(crate) fn end_current(&mut self, outcome: Outcome) {
        // Leave the dying address space before its tables are freed.
        self.load_root(self.hypervisor_root);
        let current = self.current;
        let id = self.domains[current].id;
        // Ports first: peers' ends change and their waiters wake while this page still exists.
        let Self { domains, scheduler, events, timers, memory, platform, .. } = self;
        events.remove_domain(id, &mut Wakeups { domains, scheduler, memory, platform });
        timers.cancel(current);
        self.poll_deadlines.cancel(current);
        self.domains[current].wait = Wait::Nothing;
        if let Some(domain_memory) = self.domains[current].memory.take() {
            domain_memory.destroy(&mut self.memory, &mut *self.frames.lock());
        }
        self.domain_ended_for_input(current);
        if self.trace.is_some() {
            self.trace_drain(current);
        }
        self.outcomes.push(outcome);
    }

    /// Records what the end-of-run audit compares against (`audit` on the command line);
    /// called before the first domain is built.
    pub fn start_audit(&mut self) {
        self.audit_start = Some(self.audit_counts());
    }

    /// What the hypervisor holds on the domains' behalf now.
    fn audit_counts(&self) -> Counts {
        let live = || self.domains.iter().filter_map(|domain| domain.memory.as_ref());
        Counts {
            frames_free: self.frames.lock().free_count(),
            ports_open: self.events.open_ports(),
            address_spaces: live().map(|memory| memory.live_spaces()).sum(),
            timers_armed: self.timers.pending(),
            poll_deadlines: self.poll_deadlines.pending(),
            domains_live: live().count(),
        }
    }

    /// Prints the summary and says the run's exit status.
    pub fn finish(&mut self) -> ExitStatus {
        self.end_trace();
        let free_now = self.frames.lock().free_count();
        let outcomes = &self.outcomes;
        let count = |wanted: fn(&Outcome) -> bool| outcomes.iter().filter(|outcome| wanted(outcome)).count();
        say!(
            self.platform,
            "summary: {} domains: {} poweroff, {} crash, {} killed, {} refused; frames free {} at start, {} at end; ports open 0 at start, {} at end",
            outcomes.len(),
            count(|outcome| matches!(outcome, Outcome::Poweroff(_))),
            count(|outcome| matches!(outcome, Outcome::Crash(_))),
            count(|outcome| matches!(outcome, Outcome::Killed)),
            count(|outcome| matches!(outcome, Outcome::Refused)),
            self.frames_free_at_start,
            free_now,
            self.events.open_ports()
        );
        let fairness = self.scheduler.fairness(|_| true);
        say!(self.platform, "scheduler: {}", fairness.display(self.tsc_hz));
        if free_now != self.frames_free_at_start {
            say!(self.platform, "frame leak: {} frames not returned", self.frames_free_at_start.abs_diff(free_now));
        }
        if let Some(start) = self.audit_start {
            let audit = Audit { start, end: self.audit_counts() };
            say!(self.platform, "{audit}");
        }
        let status = outcome::exit_status(self.outcomes.iter().copied());
        say!(self.platform, "exit status {}: {}", status.0, status.describe());
        status
    }
}
