//! The end-of-run audit (command-line token `audit`, SPEC.md §2.4 and §15): the counts of
//! what domains hold — free frames, open ports, live address spaces, armed timers and poll
//! deadlines, live domains — taken before the first domain is built and again after the
//! last has ended. Every one must be back where it started; a fuzzer run (`cargo xtask
//! fuzz`) reads the line to prove that nothing a domain did outlived it.

use core::fmt;

/// What the hypervisor holds on the domains' behalf at one moment.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames in the free pool.
    pub frames_free: u64,
    /// Event-channel ports open over all domains.
    pub ports_open: usize,
    /// Address spaces live over all domains (each holds page-table frames).
    pub address_spaces: usize,
    /// `set_timer_op` deadlines pending.
    pub timers_armed: usize,
    /// `sched_op(POLL)` timeouts pending.
    pub poll_deadlines: usize,
    /// Domains built and not yet ended.
    pub domains_live: usize,
}

impl Counts {
    /// Each count with its name, in the order the audit line shows them.
    fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("frames free", self.frames_free),
            ("ports open", self.ports_open as u64),
            ("address spaces", self.address_spaces as u64),
            ("timers armed", self.timers_armed as u64),
            ("poll deadlines", self.poll_deadlines as u64),
            ("domains live", self.domains_live as u64),
        ]
    }
}

/// The counts at the start and at the end of a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// Before the first domain was built.
    pub start: Counts,
    /// After the last domain ended.
    pub end: Counts,
}

impl Audit {
    /// True if every count is back where it started.
    pub fn passed(&self) -> bool {
        self.start == self.end
    }
}

/// `audit: frames free 1000 -> 1000, ports open 0 -> 0, ...: ok` (or `: FAILED (<names>)`,
/// naming each count that did not come back).
impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("audit: ")?;
        let pairs = self.start.named().into_iter().zip(self.end.named());
        for (index, ((name, start), (_, end))) in pairs.clone().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{name} {start} -> {end}")?;
        }
        if self.passed() {
            return f.write_str(": ok");
        }
        f.write_str(": FAILED (")?;
        let broken = pairs.filter(|((_, start), (_, end))| start != end);
        for (index, ((name, _), _)) in broken.enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{name}")?;
        }
        f.write_str(" not back)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn counts(frames_free: u64, ports_open: usize, address_spaces: usize) -> Counts {
        Counts { frames_free, ports_open, address_spaces, ..Counts::default() }
    }

    #[test]
    fn equal_counts_pass_and_the_line_shows_every_count() {
        let audit = Audit { start: counts(900, 0, 0), end: counts(900, 0, 0) };
        assert!(audit.passed());
        assert_eq!(
            audit.to_string(),
            "audit: frames free 900 -> 900, ports open 0 -> 0, address spaces 0 -> 0, timers armed 0 -> 0, \
             poll deadlines 0 -> 0, domains live 0 -> 0: ok"
        );
    }

    #[test]
    fn every_count_that_did_not_come_back_is_named() {
        let mut end = counts(899, 0, 2);
        end.timers_armed = 1;
        let audit = Audit { start: counts(900, 0, 0), end };
        assert!(!audit.passed());
        let line = audit.to_string();
        assert!(line.ends_with(": FAILED (frames free, address spaces, timers armed not back)"), "{line}");
        assert!(line.contains("frames free 900 -> 899"), "{line}");
        for count in
            [Counts { poll_deadlines: 1, ..Counts::default() }, Counts { domains_live: 1, ..Counts::default() }]
        {
            assert!(!Audit { start: Counts::default(), end: count }.passed(), "{count:?}");
        }
    }
}
