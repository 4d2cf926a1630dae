//! `lmbench [--iterations N] [--row WIRE]...`: the latency of the Linux system interface
//! in TSC cycles, one line per row (see `guest_kernel_user::lmbench`). As a machine's
//! first process it makes `/dev/null` available first and powers the machine off last;
//! otherwise it exits 0, or 1 if a row or the arguments were wrong.

use std::io::Write;
use std::process::ExitCode;

use guest_kernel_user::lmbench::arguments::{parse, usage, Request};
use guest_kernel_user::lmbench::measure::{measure, small_pages_only, Context, Samples};
use guest_kernel_user::lmbench::statistics::summarize;
use guest_kernel_user::lmbench::{done_line, error_line, pid_one, row_line};

/// Prints a line on standard output: where the results go, whatever else fails (a line
/// that cannot be written has nowhere else to go either).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Runs what the arguments ask for; the exit code.
fn run(arguments: &[String], context: &Context) -> u8 {
    let run = match parse(arguments) {
        Ok(Request::Run(run)) => run,
        Ok(Request::Help) => {
            say(&usage());
            return 0;
        }
        Err(reason) => {
            say(&error_line("usage", &reason));
            eprintln!("{}", usage());
            return 1;
        }
    };
    small_pages_only();
    let mut samples = Samples::new(run.most_iterations());
    let (mut printed, mut failed) = (0, false);
    for &row in &run.rows {
        let measured = measure(row, run.iterations_of(row), &mut samples, context)
            .and_then(|()| summarize(samples.taken()).ok_or_else(|| "no sample was taken".to_string()));
        match measured {
            Ok(summary) => {
                say(&row_line(row, &summary));
                printed += 1;
            }
            Err(reason) => {
                say(&error_line(row.wire(), &reason));
                failed = true;
            }
        }
    }
    say(&done_line(printed));
    u8::from(failed)
}

fn main() -> ExitCode {
    let mut words = std::env::args_os().map(|word| word.to_string_lossy().into_owned());
    let invoked_as = words.next().unwrap_or_default();
    let arguments: Vec<String> = words.collect();
    let first = pid_one::is_first_process();
    let context =
        Context { invoked_as, dev_null_problem: if first { pid_one::provide_dev_null().err() } else { None } };
    let code = run(&arguments, &context);
    let _ = std::io::stdout().flush();
    if first {
        pid_one::power_off();
    }
    ExitCode::from(code)
}
