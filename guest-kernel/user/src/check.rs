//! The report of a test program: one line per case, and the exit status.

use std::process::ExitCode;

/// What a case found: `Err` says what was wrong.
pub type Outcome = Result<(), String>;

/// Fails with `what` unless `condition` holds.
pub fn ensure(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}

/// Fails unless `actual == expected`, naming both.
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, actual: T, expected: T) -> Outcome {
    ensure(actual == expected, || format!("{what}: got {actual:?}, expected {expected:?}"))
}

/// Refuses arguments for a program that takes none: `Err` holds the usage error's status.
pub fn no_arguments(arguments: &[String]) -> Result<(), ExitCode> {
    if arguments.is_empty() {
        Ok(())
    } else {
        eprintln!("this test program takes no arguments, not {arguments:?}");
        Err(ExitCode::from(2))
    }
}

/// The cases of one program.
pub struct Suite {
    program: &'static str,
    passed: usize,
    failed: usize,
}

impl Suite {
    /// A suite named after its program (`fork` for `test-fork`). The signals the tests
    /// provoke (SIGSEGV, SIGABRT, SIGQUIT) are not to leave core files where the programs
    /// run on a host, so core dumps are turned off first.
    pub fn new(program: &'static str) -> Suite {
        crate::process::no_core_dumps();
        Suite { program, passed: 0, failed: 0 }
    }

    /// Runs `case` and prints its line.
    pub fn case(&mut self, name: &str, case: impl FnOnce() -> Outcome) {
        match case() {
            Ok(()) => {
                self.passed += 1;
                println!("ok {}.{name}", self.program);
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {}.{name}: {why}", self.program);
            }
        }
    }

    /// Prints a note that belongs to no case (a measured value).
    pub fn note(&self, text: &str) {
        println!("# {}: {text}", self.program);
    }

    /// How many cases failed so far.
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Prints the summary and returns the exit status: success only if every case passed.
    pub fn finish(self) -> ExitCode {
        let total = self.passed + self.failed;
        if self.failed == 0 {
            println!("# {}: all {total} cases passed", self.program);
            ExitCode::SUCCESS
        } else {
            println!("# {}: {} of {total} cases failed", self.program, self.failed);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_and_named() {
        let mut suite = Suite::new("unit");
        suite.case("good", || Ok(()));
        suite.case("bad", || expect_eq("answer", 41, 42));
        assert_eq!(suite.failed(), 1);
        assert_eq!(expect_eq("answer", 41, 42), Err("answer: got 41, expected 42".to_string()));
        assert_eq!(ensure(false, || "no".into()), Err("no".to_string()));
        assert_eq!(suite.finish(), ExitCode::FAILURE);
    }
}
