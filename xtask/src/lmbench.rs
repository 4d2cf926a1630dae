//! The lmbench program's side of `cargo xtask bench --kernel` (issue 14's contract): its
//! rows, its arguments, and the lines it prints, read from any console it ran on.
//!
//! `lmbench [--iterations N] [--row WIRE]...` prints, one line per row in table order,
//! `lmbench <wire> median <c> p99 <c> min <c> max <c> iterations <n>` (TSC cycles), then
//! `lmbench done rows <count>`; a row that cannot be measured prints `lmbench error <wire>
//! <reason>` and the program exits 1. The same binary runs on guest-kernel (natively and on
//! ringfence, where the hypervisor puts `(d1) ` before a domain's lines) and on Linux, where
//! the firmware may leave escape sequences before the first line: a line is read from the
//! word `lmbench` on.

/// One row: its wire name (the program's) and its name in the table (the issue's).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The name on the program's lines and its `--row` argument.
    pub wire: &'static str,
    /// The name in the table.
    pub title: &'static str,
}

/// Every row, in the program's (and the table's) order.
pub const ROWS: [Row; 9] = [
    Row { wire: "null_syscall", title: "null syscall" },
    Row { wire: "write_devnull", title: "write devnull" },
    Row { wire: "fork_exit", title: "fork exit" },
    Row { wire: "fork_exec", title: "fork exec" },
    Row { wire: "pipe_roundtrip", title: "pipe roundtrip" },
    Row { wire: "ctx_switch", title: "ctx switch" },
    Row { wire: "page_fault", title: "page fault" },
    Row { wire: "mmap_512", title: "mmap 512" },
    Row { wire: "clock_gettime", title: "clock_gettime" },
];

/// The program in the initramfs, and the one its `fork exec` row executes.
pub const PROGRAM: &str = "/bin/lmbench";
/// See [`PROGRAM`].
pub const TRUE_PROGRAM: &str = "/bin/lmbench-true";

/// The rows `--row` selects: those whose wire name contains one of `filters` (all rows
/// without a filter), in table order; an error naming the rows if a filter matches none.
pub fn select(filters: &[String]) -> std::result::Result<Vec<Row>, String> {
    if let Some(unknown) = filters.iter().find(|filter| !ROWS.iter().any(|row| row.wire.contains(filter.as_str()))) {
        let known: Vec<&str> = ROWS.iter().map(|row| row.wire).collect();
        return Err(format!("no lmbench row matches --row {unknown:?}; rows: {}", known.join(", ")));
    }
    let chosen = |row: &Row| filters.is_empty() || filters.iter().any(|filter| row.wire.contains(filter.as_str()));
    Ok(ROWS.iter().copied().filter(chosen).collect())
}

/// The program's arguments: `--iterations N` if given, and `--row WIRE` for each selected
/// row unless all are selected.
pub fn arguments(iterations: Option<u64>, rows: &[Row]) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(iterations) = iterations {
        words.extend(["--iterations".to_string(), iterations.to_string()]);
    }
    if rows.len() != ROWS.len() {
        for row in rows {
            words.extend(["--row".to_string(), row.wire.to_string()]);
        }
    }
    words
}

/// One row's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The wire name.
    pub wire: String,
    /// TSC cycles: the median, the 99th percentile, the fastest and the slowest iteration.
    pub median: u64,
    /// See [`Sample::median`].
    pub p99: u64,
    /// See [`Sample::median`].
    pub min: u64,
    /// See [`Sample::median`].
    pub max: u64,
    /// Measured iterations.
    pub iterations: u64,
}

/// A line of the program's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A row's numbers.
    Sample(Sample),
    /// `lmbench done rows <count>`.
    Done(usize),
    /// `lmbench error <wire> <reason>`.
    Error { wire: String, reason: String },
}

/// Reads one console line: the program's, from the word `lmbench` on, or `None`. A row
/// line whose numbers cannot be (min <= median <= p99 <= max, at least one iteration) is
/// not the program's.
pub fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim_end_matches(['\r', '\n']);
    line.match_indices("lmbench ").find_map(|(start, _)| parse_from(&line[start..]))
}

fn parse_from(text: &str) -> Option<Line> {
    let words: Vec<&str> = text.split(' ').collect();
    let number = |word: &str| -> Option<u64> {
        word.bytes().all(|byte| byte.is_ascii_digit()).then(|| word.parse().ok()).flatten()
    };
    let known = |wire: &str| ROWS.iter().any(|row| row.wire == wire);
    match words.as_slice() {
        ["lmbench", wire, "median", median, "p99", p99, "min", min, "max", max, "iterations", iterations]
            if known(wire) =>
        {
            let sample = Sample {
                wire: wire.to_string(),
                median: number(median)?,
                p99: number(p99)?,
                min: number(min)?,
                max: number(max)?,
                iterations: number(iterations)?,
            };
            let ordered = sample.min <= sample.median && sample.median <= sample.p99 && sample.p99 <= sample.max;
            (ordered && sample.iterations > 0).then_some(Line::Sample(sample))
        }
        ["lmbench", "done", "rows", count] => Some(Line::Done(usize::try_from(number(count)?).ok()?)),
        ["lmbench", "error", wire, reason @ ..] if !wire.is_empty() => {
            Some(Line::Error { wire: wire.to_string(), reason: reason.join(" ") })
        }
        _ => None,
    }
}

/// What one run of the program printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The rows' numbers, in the order printed.
    pub samples: Vec<Sample>,
    /// The `done` line's count, if it came.
    pub done: Option<usize>,
    /// The `error` lines: wire name and reason.
    pub errors: Vec<(String, String)>,
}

impl Report {
    /// Reads a whole console.
    pub fn read(console: &str) -> Report {
        let mut report = Report::default();
        for line in console.lines().filter_map(parse_line) {
            match line {
                Line::Sample(sample) => report.samples.push(sample),
                Line::Done(count) => report.done = Some(count),
                Line::Error { wire, reason } => report.errors.push((wire, reason)),
            }
        }
        report
    }

    /// The numbers of row `wire`.
    pub fn sample(&self, wire: &str) -> Option<&Sample> {
        self.samples.iter().find(|sample| sample.wire == wire)
    }

    /// What is wrong with the run that was asked for `rows`, or `None`: every row once, no
    /// error, and a `done` line counting them.
    pub fn problem(&self, rows: &[Row]) -> Option<String> {
        if let Some((wire, reason)) = self.errors.first() {
            return Some(format!("lmbench could not measure {wire}: {reason}"));
        }
        let missing: Vec<&str> = rows.iter().map(|row| row.wire).filter(|wire| self.sample(wire).is_none()).collect();
        if !missing.is_empty() {
            return Some(format!("no lmbench line for {}", missing.join(", ")));
        }
        if let Some(twice) = rows.iter().find(|row| self.samples.iter().filter(|s| s.wire == row.wire).count() > 1) {
            return Some(format!("lmbench printed {} twice", twice.wire));
        }
        match self.done {
            None => Some("no `lmbench done` line: the program did not finish".to_string()),
            Some(count) if count != self.samples.len() => {
                Some(format!("`lmbench done rows {count}` after {} row lines", self.samples.len()))
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wire: &str, median: u64) -> Sample {
        Sample { wire: wire.into(), median, p99: median + 10, min: median - 1, max: median + 100, iterations: 1000 }
    }

    #[test]
    fn lines_are_read_behind_any_prefix() {
        let line = "lmbench null_syscall median 2500 p99 3100 min 2400 max 183026 iterations 1000";
        let expected = Line::Sample(Sample {
            wire: "null_syscall".into(),
            median: 2500,
            p99: 3100,
            min: 2400,
            max: 183_026,
            iterations: 1000,
        });
        for prefix in ["", "(d1) ", "c\u{1b}[?7l\u{1b}[2J"] {
            assert_eq!(parse_line(&format!("{prefix}{line}\r")), Some(expected.clone()), "{prefix:?}");
        }
        assert_eq!(parse_line("lmbench done rows 9"), Some(Line::Done(9)));
        assert_eq!(
            parse_line("(d1) lmbench error fork_exec execve /bin/lmbench-true: ENOENT"),
            Some(Line::Error { wire: "fork_exec".into(), reason: "execve /bin/lmbench-true: ENOENT".into() })
        );
        // The kernel echoing its command line is not a program line.
        assert_eq!(parse_line("guest-kernel: command line '-- /bin/lmbench --iterations 5'"), None);
    }

    #[test]
    fn malformed_lines_are_not_rows() {
        for bad in [
            "lmbench null_syscall median 2500 p99 3100 min 2400 max 183026",
            "lmbench null_syscall median -1 p99 3100 min 2400 max 183026 iterations 1",
            "lmbench null_syscall median +5 p99 6 min 1 max 9 iterations 1",
            "lmbench null_syscall median 5 p99 4 min 1 max 9 iterations 1",
            "lmbench null_syscall median 5 p99 6 min 7 max 9 iterations 1",
            "lmbench null_syscall median 5 p99 6 min 1 max 9 iterations 0",
            "lmbench null_syscall median 5 p99 6 min 1 max 99999999999999999999 iterations 1",
            "lmbench null_syscall  median 5 p99 6 min 1 max 9 iterations 1",
            "lmbench brand_new median 5 p99 6 min 1 max 9 iterations 1",
            "lmbench done rows nine",
            "lmbench error",
            "bench null_hypercall median 1 p99 2 iterations 3",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_report_is_complete_only_with_every_row_and_the_done_line() {
        let rows = &ROWS[..2];
        let console = "boot\nlmbench null_syscall median 100 p99 110 min 99 max 200 iterations 1000\n\
                       (d1) lmbench write_devnull median 300 p99 310 min 299 max 400 iterations 1000\n\
                       lmbench done rows 2\n";
        let report = Report::read(console);
        assert_eq!(report.problem(rows), None);
        assert_eq!(report.sample("write_devnull").unwrap().median, 300);
        let cut = Report::read(&console[..console.find("lmbench done").unwrap()]);
        assert_eq!(cut.problem(rows).unwrap(), "no `lmbench done` line: the program did not finish");
        assert_eq!(Report::read(console).problem(&ROWS[..3]).unwrap(), "no lmbench line for fork_exit");
        let failed = Report::read("lmbench error fork_exit fork: EAGAIN\n");
        assert_eq!(failed.problem(rows).unwrap(), "lmbench could not measure fork_exit: fork: EAGAIN");
        let mut miscounted = report.clone();
        miscounted.done = Some(3);
        assert_eq!(miscounted.problem(rows).unwrap(), "`lmbench done rows 3` after 2 row lines");
        let mut twice = report;
        twice.samples.push(sample("null_syscall", 5));
        assert_eq!(twice.problem(rows).unwrap(), "lmbench printed null_syscall twice");
    }

    #[test]
    fn rows_are_selected_by_a_word_of_their_name() {
        assert_eq!(select(&[]).unwrap(), ROWS);
        let forks = select(&["fork".to_string()]).unwrap();
        assert_eq!(forks.iter().map(|row| row.wire).collect::<Vec<_>>(), ["fork_exit", "fork_exec"]);
        let error = select(&["null".to_string(), "nothing".to_string()]).unwrap_err();
        assert!(error.starts_with("no lmbench row matches --row \"nothing\"; rows: null_syscall, "), "{error}");
        assert_eq!(ROWS.map(|row| row.title).join(","), "null syscall,write devnull,fork exit,fork exec,pipe roundtrip,ctx switch,page fault,mmap 512,clock_gettime");
    }

    #[test]
    fn arguments_pass_iterations_and_rows_through() {
        assert!(arguments(None, &ROWS).is_empty(), "all rows: no --row");
        assert_eq!(arguments(Some(50), &ROWS), ["--iterations", "50"]);
        assert_eq!(arguments(Some(7), &ROWS[6..8]), ["--iterations", "7", "--row", "page_fault", "--row", "mmap_512"]);
    }
}
