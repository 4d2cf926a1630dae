//! `lmbench`: the latency of the Linux system interface, lmbench-style, in TSC cycles.
//!
//! One static program measures the same work on every kernel it is compared on (Linux
//! native, Linux as a Xen PV guest, guest-kernel native and on ringfence): a row times one
//! operation many times, each with `lfence; rdtsc` before and after, after a few untimed
//! warm-up runs, and prints one line on standard output:
//!
//! ```text
//! lmbench <wire> median <cycles> p99 <cycles> min <cycles> max <cycles> iterations <n>
//! ```
//!
//! then `lmbench done rows <count>` (the rows printed). A row that cannot be measured
//! prints `lmbench error <wire> <reason>` instead (an argument error names `usage`), and
//! the program exits 1. `cargo xtask bench --kernel` parses these lines: they are a
//! contract ([`row_line`], [`done_line`], [`error_line`]).
//!
//! Every sample includes the two `lfence; rdtsc` pairs' own cost (a few tens of cycles on
//! hardware): nothing is subtracted, on any kernel alike.

pub mod arguments;
pub mod cycles;
pub mod measure;
pub mod pid_one;
pub mod row;
pub mod statistics;

use row::Row;
use statistics::Summary;

/// A row's line.
pub fn row_line(row: Row, summary: &Summary) -> String {
    format!(
        "lmbench {} median {} p99 {} min {} max {} iterations {}",
        row.wire(),
        summary.median,
        summary.p99,
        summary.min,
        summary.max,
        summary.iterations
    )
}

/// The last line of a run: how many rows were printed.
pub fn done_line(rows: usize) -> String {
    format!("lmbench done rows {rows}")
}

/// The line for what could not be measured: `subject` is the row's wire name, or `usage`
/// for bad arguments. The reason is kept on the one line.
pub fn error_line(subject: &str, reason: &str) -> String {
    format!("lmbench error {subject} {}", reason.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_are_the_contracts() {
        let summary = Summary { median: 120, p99: 480, min: 100, max: 9000, iterations: 50 };
        assert_eq!(
            row_line(Row::NullSyscall, &summary),
            "lmbench null_syscall median 120 p99 480 min 100 max 9000 iterations 50"
        );
        assert_eq!(done_line(9), "lmbench done rows 9");
        assert_eq!(error_line("fork_exec", "execve failed:\nENOENT"), "lmbench error fork_exec execve failed: ENOENT");
    }
}
