//! std::process::Command, as Rust programs start others: piped stdin, stdout and stderr,
//! exit codes and signals, environment and working directory, a two-process pipeline, and
//! a program that is not there.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn output_and_status() -> Outcome {
    let output = Command::new("sh")
        .args(["-c", "echo to stdout; echo to stderr >&2; exit 3"])
        .output()
        .map_err(|error| format!("cannot run sh: {error}"))?;
    expect_eq("stdout", text(&output.stdout), "to stdout\n".to_string())?;
    expect_eq("stderr", text(&output.stderr), "to stderr\n".to_string())?;
    expect_eq("exit code", output.status.code(), Some(3))
}

fn true_and_false() -> Outcome {
    let status =
        |program: &str| Command::new(program).status().map_err(|error| format!("cannot run {program}: {error}"));
    expect_eq("true", status("true")?.code(), Some(0))?;
    expect_eq("false", status("false")?.code(), Some(1))
}

fn stdin_through_cat() -> Outcome {
    // Small enough for both pipes' buffers: this program has one thread, so it writes all
    // of stdin before it reads stdout.
    let input: Vec<u8> = (0..32 * 1024).map(|index| b'a' + (index % 26) as u8).collect();
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run cat: {error}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin pipe")?;
    stdin.write_all(&input).map_err(|error| format!("writing to cat: {error}"))?;
    drop(stdin);
    let output = child.wait_with_output().map_err(|error| format!("waiting for cat: {error}"))?;
    expect_eq("cat's status", output.status.code(), Some(0))?;
    ensure(output.stdout == input, || {
        format!("cat gave back {} bytes, not the {} sent", output.stdout.len(), input.len())
    })
}

fn environment_and_directory() -> Outcome {
    let output = Command::new("sh")
        .args(["-c", "echo \"$GREETING\"; pwd"])
        .env("GREETING", "hello there")
        .current_dir("/tmp")
        .output()
        .map_err(|error| format!("cannot run sh: {error}"))?;
    expect_eq("output", text(&output.stdout), "hello there\n/tmp\n".to_string())?;
    let output = Command::new("sh")
        .args(["-c", "echo \"[$HOME]\""])
        .env_clear()
        .output()
        .map_err(|error| format!("cannot run sh: {error}"))?;
    expect_eq("output with an empty environment", text(&output.stdout), "[]\n".to_string())
}

fn killed_by_a_signal() -> Outcome {
    let status =
        Command::new("sh").args(["-c", "kill -9 $$"]).status().map_err(|error| format!("cannot run sh: {error}"))?;
    expect_eq("signal", status.signal(), Some(9))?;
    expect_eq("code", status.code(), None)
}

fn a_pipeline() -> Outcome {
    let mut producer = Command::new("sh")
        .args(["-c", "for word in pear apple fig; do echo $word; done"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run sh: {error}"))?;
    let between = producer.stdout.take().ok_or("no stdout pipe")?;
    let mut sorter = Command::new("sort")
        .stdin(Stdio::from(between))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run sort: {error}"))?;
    let mut sorted = String::new();
    sorter
        .stdout
        .take()
        .ok_or("no stdout pipe")?
        .read_to_string(&mut sorted)
        .map_err(|error| format!("reading sort's output: {error}"))?;
    let statuses = (producer.wait().map(|s| s.code()), sorter.wait().map(|s| s.code()));
    expect_eq("statuses", (statuses.0.ok().flatten(), statuses.1.ok().flatten()), (Some(0), Some(0)))?;
    expect_eq("sorted", sorted, "apple\nfig\npear\n".to_string())
}

fn a_missing_program() -> Outcome {
    match Command::new("no-such-program-here").status() {
        Err(error) => expect_eq("error kind", error.kind(), std::io::ErrorKind::NotFound),
        Ok(status) => Err(format!("a missing program ran ({status})")),
    }
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("command");
    suite.case("output_and_status", output_and_status);
    suite.case("true_false", true_and_false);
    suite.case("stdin_through_cat", stdin_through_cat);
    suite.case("env_and_cwd", environment_and_directory);
    suite.case("killed_by_signal", killed_by_a_signal);
    suite.case("pipeline", a_pipeline);
    suite.case("missing_program", a_missing_program);
    suite.finish()
}
