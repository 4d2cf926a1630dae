//! How each domain ended, and the one exit status that summarizes them all (worst wins).

use hypercall_abi::exit::ExitStatus;

/// How one domain (or domain specification) ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `sched_op(SHUTDOWN, POWEROFF, code)`.
    Poweroff(u32),
    /// `sched_op(SHUTDOWN, CRASH, code)`.
    Crash(u32),
    /// The hypervisor ended the domain (fault, bad state).
    Killed,
    /// The image or specification was refused before the domain ran.
    Refused,
}

impl Outcome {
    /// The exit status this outcome alone would produce.
    pub fn status(self) -> ExitStatus {
        match self {
            Self::Poweroff(0) => ExitStatus::SUCCESS,
            Self::Poweroff(_) => ExitStatus::NONZERO_CODE,
            Self::Crash(_) => ExitStatus::CRASHED,
            Self::Killed => ExitStatus::KILLED,
            Self::Refused => ExitStatus::REFUSED,
        }
    }
}

/// The summary over all outcomes: the worst one wins ([`ExitStatus::worst`]); no outcomes
/// at all means there was nothing to run.
pub fn exit_status(outcomes: impl IntoIterator<Item = Outcome>) -> ExitStatus {
    outcomes.into_iter().map(Outcome::status).reduce(ExitStatus::worst).unwrap_or(ExitStatus::NOTHING_TO_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_outcomes() {
        assert_eq!(exit_status([Outcome::Poweroff(0)]), ExitStatus::SUCCESS);
        assert_eq!(exit_status([Outcome::Poweroff(3)]), ExitStatus::NONZERO_CODE);
        assert_eq!(exit_status([Outcome::Crash(0)]), ExitStatus::CRASHED);
        assert_eq!(exit_status([Outcome::Killed]), ExitStatus::KILLED);
        assert_eq!(exit_status([Outcome::Refused]), ExitStatus::REFUSED);
    }

    #[test]
    fn worst_wins_in_any_order() {
        let outcomes = [Outcome::Poweroff(0), Outcome::Killed, Outcome::Poweroff(9), Outcome::Crash(1)];
        assert_eq!(exit_status(outcomes), ExitStatus::KILLED);
        let mut reversed = outcomes;
        reversed.reverse();
        assert_eq!(exit_status(reversed), ExitStatus::KILLED);
        assert_eq!(exit_status([Outcome::Poweroff(0), Outcome::Poweroff(0)]), ExitStatus::SUCCESS);
        assert_eq!(exit_status([Outcome::Refused, Outcome::Killed]), ExitStatus::REFUSED);
        assert_eq!(exit_status([Outcome::Refused, Outcome::Refused]), ExitStatus::REFUSED);
    }

    #[test]
    fn nothing_to_run() {
        assert_eq!(exit_status([]), ExitStatus::NOTHING_TO_RUN);
        assert_eq!(exit_status(Vec::new()), ExitStatus::NOTHING_TO_RUN);
    }
}
