//! XTF-style test reporting for conformance guests: failures print `FAIL: <what>`, the
//! outcome only ratchets toward worse (SUCCESS < SKIP < ERROR < FAILURE), and
//! [`Reporter::finish`] prints exactly one `Test result: <OUTCOME>` line and powers off
//! with code 0 whatever the outcome (the runner judges the line, not the code).

use core::fmt::{self, Debug, Display};

use hypercall_abi::Errno;

use crate::console::print_to;
use crate::hypercall::{HypercallInterface, Hypercalls, Syscall, HYPERVISOR};

/// A test's overall outcome, ordered by severity.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every check passed.
    Success,
    /// The test could not run here (missing feature, bad arguments for a sub-case).
    Skip,
    /// The test itself went wrong (not the code under test).
    Error,
    /// Some check failed.
    Failure,
}

impl Outcome {
    /// The word on the `Test result:` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Skip => "SKIP",
            Outcome::Error => "ERROR",
            Outcome::Failure => "FAILURE",
        }
    }
}

impl Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shows a hypercall result the way the ABI writes it: a value, or `-ENAME`.
pub struct ShowResult<'a, T>(pub &'a Result<T, Errno>);

impl<T: Debug> Display for ShowResult<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(value) => write!(f, "{value:?}"),
            Err(errno) => write!(f, "-{errno}"),
        }
    }
}

/// Collects check results and prints the final line.
pub struct Reporter<I: HypercallInterface = Syscall> {
    hypercalls: Hypercalls<I>,
    outcome: Outcome,
    failures: u32,
}

impl Reporter<Syscall> {
    /// A reporter printing to this domain's console.
    pub const fn new() -> Self {
        Self::with_hypercalls(HYPERVISOR)
    }
}

impl Default for Reporter<Syscall> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: HypercallInterface> Reporter<I> {
    /// A reporter printing through `hypercalls` (host tests pass a fake).
    pub const fn with_hypercalls(hypercalls: Hypercalls<I>) -> Self {
        Self { hypercalls, outcome: Outcome::Success, failures: 0 }
    }

    /// The outcome so far.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Checks failed so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn raise(&mut self, outcome: Outcome) {
        self.outcome = self.outcome.max(outcome);
    }

    fn line(&self, arguments: fmt::Arguments<'_>) {
        print_to(&self.hypercalls, format_args!("{arguments}\n"));
    }

    /// Records a failure: prints `FAIL: <what>`.
    pub fn fail(&mut self, what: impl Display) {
        self.failures += 1;
        self.raise(Outcome::Failure);
        self.line(format_args!("FAIL: {what}"));
    }

    /// Passes if `condition` holds, else fails with `what`. Returns `condition`.
    pub fn check(&mut self, condition: bool, what: impl Display) -> bool {
        if !condition {
            self.fail(what);
        }
        condition
    }

    /// Passes if `actual == expected`, else prints `FAIL: <what>: got <a>, expected <e>`.
    pub fn expect_eq<T: PartialEq + Debug>(&mut self, actual: T, expected: T, what: impl Display) -> bool {
        let equal = actual == expected;
        if !equal {
            self.fail(format_args!("{what}: got {actual:?}, expected {expected:?}"));
        }
        equal
    }

    /// Passes if `result` is the error `expected`, else prints
    /// `FAIL: <what>: got <result>, expected -<ERRNO>`.
    pub fn expect_errno<T: Debug>(&mut self, result: Result<T, Errno>, expected: Errno, what: impl Display) -> bool {
        let matches = result.as_ref().err() == Some(&expected);
        if !matches {
            self.fail(format_args!("{what}: got {}, expected -{expected}", ShowResult(&result)));
        }
        matches
    }

    /// Passes if `result` is a success and returns its value; else prints
    /// `FAIL: <what>: got -<ERRNO>`.
    pub fn expect_ok<T>(&mut self, result: Result<T, Errno>, what: impl Display) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(errno) => {
                self.fail(format_args!("{what}: got -{errno}"));
                None
            }
        }
    }

    /// The test cannot run here: prints `SKIP: <reason>`.
    pub fn skip(&mut self, reason: impl Display) {
        self.raise(Outcome::Skip);
        self.line(format_args!("SKIP: {reason}"));
    }

    /// The test itself went wrong: prints `ERROR: <what>`.
    pub fn error(&mut self, what: impl Display) {
        self.raise(Outcome::Error);
        self.line(format_args!("ERROR: {what}"));
    }

    /// Prints `Test result: <OUTCOME>` and powers off with code 0.
    pub fn finish(self) -> ! {
        self.line(format_args!("Test result: {}", self.outcome));
        self.hypercalls.poweroff(0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake::Fake;
    use hypercall_abi::hypercall::{sched_cmd, shutdown_reason};
    use std::string::String;

    fn finish_and_capture(reporter: Reporter<&Fake>) -> String {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || reporter.finish()));
        result.unwrap_err().downcast::<String>().map(|message| *message).unwrap()
    }

    #[test]
    fn success_when_all_checks_pass() {
        let fake = Fake::default();
        let mut reporter = Reporter::with_hypercalls(Hypercalls::new(&fake));
        assert!(reporter.check(true, "fine"));
        assert!(reporter.expect_eq(3, 3, "three"));
        assert!(reporter.expect_errno::<u64>(Err(Errno::EINVAL), Errno::EINVAL, "einval"));
        assert_eq!(reporter.expect_ok::<u64>(Ok(5), "five"), Some(5));
        assert_eq!(finish_and_capture(reporter), "shutdown reason 0 code 0");
        assert_eq!(fake.console_text(), "Test result: SUCCESS\n");
        let calls = fake.calls.borrow();
        let last = calls.last().unwrap();
        assert_eq!(last.arguments[..3], [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, 0]);
    }

    #[test]
    fn failures_are_printed_and_stick() {
        let fake = Fake::default();
        let mut reporter = Reporter::with_hypercalls(Hypercalls::new(&fake));
        assert!(!reporter.check(false, format_args!("value {}", 1)));
        assert!(!reporter.expect_eq(1, 2, "one"));
        assert!(!reporter.expect_errno::<u64>(Ok(4), Errno::EFAULT, "ok instead"));
        assert!(!reporter.expect_errno::<u64>(Err(Errno::EINVAL), Errno::EFAULT, "wrong errno"));
        assert_eq!(reporter.expect_ok::<u64>(Err(Errno::ENOSYS), "missing"), None);
        reporter.skip("later skip does not hide the failure");
        assert_eq!(reporter.outcome(), Outcome::Failure);
        assert_eq!(reporter.failures(), 5);
        // Still powers off with code 0: the line carries the verdict.
        assert_eq!(finish_and_capture(reporter), "shutdown reason 0 code 0");
        assert_eq!(
            fake.console_text(),
            "FAIL: value 1\n\
             FAIL: one: got 1, expected 2\n\
             FAIL: ok instead: got 4, expected -EFAULT\n\
             FAIL: wrong errno: got -EINVAL, expected -EFAULT\n\
             FAIL: missing: got -ENOSYS\n\
             SKIP: later skip does not hide the failure\n\
             Test result: FAILURE\n"
        );
    }

    #[test]
    fn outcome_ratchets() {
        let fake = Fake::default();
        let mut reporter = Reporter::with_hypercalls(Hypercalls::new(&fake));
        reporter.skip("no feature");
        assert_eq!(reporter.outcome(), Outcome::Skip);
        reporter.error("bad argument");
        assert_eq!(reporter.outcome(), Outcome::Error);
        reporter.skip("again");
        assert_eq!(reporter.outcome(), Outcome::Error);
        let _ = finish_and_capture(reporter);
        assert!(fake.console_text().ends_with("ERROR: bad argument\nSKIP: again\nTest result: ERROR\n"));
        assert_eq!(fake.console_text().matches("Test result:").count(), 1);
    }

    #[test]
    fn outcome_order_and_words() {
        assert!(
            Outcome::Success < Outcome::Skip && Outcome::Skip < Outcome::Error && Outcome::Error < Outcome::Failure
        );
        assert_eq!(Outcome::Failure.to_string(), "FAILURE");
        assert_eq!(std::format!("{}", ShowResult::<u64>(&Err(Errno(999)))), "-errno 999");
    }
}
