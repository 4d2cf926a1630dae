//! `lmbench [--iterations N] [--row WIRE]...`: what to measure.

use super::row::{Row, ROWS};

/// The most samples a row may be asked for: 8 MiB of samples, which the program holds
/// for the whole run (and a kernel under test may have little memory).
pub const MAX_ITERATIONS: usize = 1 << 20;

/// The synopsis, for `--help` and after an argument error.
pub fn usage() -> String {
    format!("usage: lmbench [--iterations N] [--row WIRE]... (rows, all by default: {})", wire_names())
}

fn wire_names() -> String {
    ROWS.iter().map(|row| row.wire()).collect::<Vec<_>>().join(" ")
}

/// A run to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The rows, in the order to measure and print them (every row when none was named).
    pub rows: Vec<Row>,
    /// Timed iterations of every row, instead of each row's default.
    pub iterations: Option<usize>,
}

impl Run {
    /// How many samples `row` takes.
    pub fn iterations_of(&self, row: Row) -> usize {
        self.iterations.unwrap_or_else(|| row.default_iterations())
    }

    /// The most samples any row of the run takes: the sample buffer's size.
    pub fn most_iterations(&self) -> usize {
        self.rows.iter().map(|&row| self.iterations_of(row)).max().unwrap_or(0)
    }
}

/// What the arguments ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Measure.
    Run(Run),
    /// Print the synopsis.
    Help,
}

fn parse_iterations(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if (1..=MAX_ITERATIONS).contains(&count) => Ok(count),
        _ => Err(format!("--iterations takes a whole number from 1 to {MAX_ITERATIONS}, not {text:?}")),
    }
}

fn parse_row(wire: &str) -> Result<Row, String> {
    Row::from_wire(wire).ok_or_else(|| format!("unknown row {wire:?}; --row takes one of: {}", wire_names()))
}

/// Reads the arguments after the program's name. `Err` says what is wrong and how to
/// say it right.
pub fn parse(arguments: &[String]) -> Result<Request, String> {
    let mut rows = Vec::new();
    let mut iterations = None;
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        let (option, inline) = match word.split_once('=') {
            Some((option, value)) if option.starts_with("--") => (option, Some(value.to_string())),
            _ => (word.as_str(), None),
        };
        let mut value =
            || inline.clone().or_else(|| words.next().cloned()).ok_or_else(|| format!("{option} needs a value"));
        match option {
            "--help" | "-h" if inline.is_none() => return Ok(Request::Help),
            "--iterations" => {
                if iterations.is_some() {
                    return Err("--iterations is given twice".to_string());
                }
                iterations = Some(parse_iterations(&value()?)?);
            }
            "--row" => {
                let row = parse_row(&value()?)?;
                if rows.contains(&row) {
                    return Err(format!("--row {} is given twice", row.wire()));
                }
                rows.push(row);
            }
            _ => return Err(format!("unknown argument {word:?}")),
        }
    }
    if rows.is_empty() {
        rows = ROWS.to_vec();
    }
    Ok(Request::Run(Run { rows, iterations }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Request, String> {
        parse(&words.iter().map(|word| word.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_arguments_is_every_row_with_its_default() {
        let Ok(Request::Run(run)) = parse_words(&[]) else { panic!() };
        assert_eq!(run.rows, ROWS);
        assert_eq!(run.iterations_of(Row::ForkExec), Row::ForkExec.default_iterations());
        assert_eq!(run.most_iterations(), 10_000);
    }

    #[test]
    fn rows_and_iterations_are_taken_in_either_spelling() {
        let Ok(Request::Run(run)) = parse_words(&["--row", "fork_exec", "--iterations=50", "--row=null_syscall"])
        else {
            panic!()
        };
        assert_eq!(run, Run { rows: vec![Row::ForkExec, Row::NullSyscall], iterations: Some(50) });
        assert_eq!((run.iterations_of(Row::ForkExec), run.most_iterations()), (50, 50));
        assert_eq!(parse_words(&["--help"]), Ok(Request::Help));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        for (words, message) in [
            (&["--row", "nope"][..], "unknown row \"nope\"; --row takes one of: null_syscall write_devnull"),
            (&["--row"][..], "--row needs a value"),
            (&["--row", "page_fault", "--row", "page_fault"][..], "--row page_fault is given twice"),
            (&["--iterations", "0"][..], "--iterations takes a whole number from 1 to 1048576, not \"0\""),
            (&["--iterations", "many"][..], "--iterations takes a whole number"),
            (&["--iterations=1048577"][..], "--iterations takes a whole number"),
            (&["--iterations", "5", "--iterations", "6"][..], "--iterations is given twice"),
            (&["--help=yes"][..], "unknown argument \"--help=yes\""),
            (&["fork_exec"][..], "unknown argument \"fork_exec\""),
        ] {
            let error = parse_words(words).unwrap_err();
            assert!(error.starts_with(message), "{words:?}: {error}");
        }
    }
}
