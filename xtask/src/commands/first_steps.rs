//! A new user's first steps, run as the README tells them, by `cargo xtask test`:
//! `cargo xtask run` must print what "What you will see" shows, and a crate written by
//! `cargo xtask new-guest` outside the checkout must build offline and boot.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use xtask::junit::{Outcome, Suite, TestCase};
use xtask::{readme, workspace};

/// A check: its name, selected by `cargo xtask test` filters like a conformance case, and
/// what it does (a one-line summary, or why it failed).
type Check = (&'static str, fn() -> Result<String, String>);

/// Every check, in order.
const CHECKS: [Check; 2] =
    [("readme::what_you_will_see", what_you_will_see), ("new_guest::out_of_checkout", out_of_checkout)];

/// Runs this xtask binary with `args` and `env`, returning its exit code and what it
/// printed (stdout and stderr in order, as on a terminal).
pub(super) fn xtask(args: &[&str], env: &[(&str, &Path)]) -> Result<(Option<i32>, String), String> {
    let program = std::env::current_exe().map_err(|error| format!("cannot find the xtask binary: {error}"))?;
    let cannot = |error: std::io::Error| format!("cannot run xtask {}: {error}", args.join(" "));
    let (mut reader, writer) = std::io::pipe().map_err(cannot)?;
    let mut command = Command::new(program);
    command.args(args).current_dir(workspace::root()).stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.stdout(writer.try_clone().map_err(cannot)?).stderr(writer);
    let mut child = command.spawn().map_err(cannot)?;
    // The command holds the pipe's write ends; reading ends only when every one is gone.
    drop(command);
    let mut output = Vec::new();
    reader.read_to_end(&mut output).map_err(cannot)?;
    let status = child.wait().map_err(cannot)?;
    Ok((status.code(), String::from_utf8_lossy(&output).into_owned()))
}

/// The README's "What you will see" command (a TCG run) against its listing.
fn what_you_will_see() -> Result<String, String> {
    let text = readme::text().map_err(|error| format!("cannot read README.md: {error}"))?;
    let (arguments, listing) = readme::what_you_will_see(&text)?;
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let shown = format!("cargo xtask {}", arguments.join(" "));
    let (code, output) = xtask(&arguments, &[])?;
    if code != Some(0) {
        return Err(format!("`{shown}` exited with {code:?}:\n{output}"));
    }
    readme::check_listing(&listing, &output).map_err(|error| {
        format!("README.md's \"What you will see\" has drifted: {error}\nthe run printed:\n{output}")
    })?;
    Ok(format!("{} listing lines match `{shown}`", listing.len()))
}

/// A scratch directory outside the checkout, the same for every run from this checkout (so
/// the guest crate's own build output is replaced, not piled up).
fn scratch_dir() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    workspace::root().hash(&mut hasher);
    std::env::temp_dir().join(format!("ringfence-new-guest-{:016x}", hasher.finish()))
}

/// `cargo xtask new-guest` into a directory outside the checkout, then `cargo xtask run
/// --guest` on it with the network off. The crate's `.cargo/config.toml` points its target
/// directory into the checkout's `target/`, so guest-rt and its dependencies compile on the
/// first run only.
fn out_of_checkout() -> Result<String, String> {
    let scratch = scratch_dir();
    let root = workspace::root();
    if scratch.starts_with(&root) {
        return Err(format!(
            "the temporary directory {} is inside the checkout; set TMPDIR elsewhere",
            scratch.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let guest = scratch.join("hello-guest");
    let guest_arg = guest.to_string_lossy().into_owned();
    let result = (|| {
        let (code, output) = xtask(&["new-guest", &guest_arg], &[])?;
        if code != Some(0) {
            return Err(format!("`cargo xtask new-guest {guest_arg}` exited with {code:?}:\n{output}"));
        }
        let target = workspace::artifact_dir().join("new-guest-target");
        let config = guest.join(".cargo").join("config.toml");
        let setting = format!("[build]\ntarget-dir = \"{}\"\n", target.display().to_string().replace('\\', "\\\\"));
        std::fs::create_dir_all(guest.join(".cargo")).map_err(|error| format!("cannot create .cargo: {error}"))?;
        std::fs::write(&config, setting).map_err(|error| format!("cannot write {}: {error}", config.display()))?;
        let (code, output) = xtask(&["new-guest", &guest_arg], &[])?;
        if code != Some(xtask::error::EXIT_USAGE) || !output.contains("exists and is not empty") {
            return Err(format!("a second new-guest into {guest_arg} exited with {code:?}, not 121:\n{output}"));
        }
        let started = Instant::now();
        let (code, output) =
            xtask(&["run", "--accel", "tcg", "--guest", &guest_arg], &[("CARGO_NET_OFFLINE", Path::new("true"))])?;
        let seconds = started.elapsed().as_secs_f64();
        let abi = hypercall_abi::ABI_VERSION;
        // The template's lines (its page count is the hypervisor's default memory).
        let expected = [
            ("(d1) hello from domain 1 with ", " pages"),
            (&format!("(d1) the hypervisor speaks ABI {abi}"), ""),
            ("(hv) d1 hello-guest: exited: poweroff code 0", ""),
        ];
        let missing: Vec<String> = expected
            .iter()
            .filter(|(start, end)| !output.lines().any(|line| line.starts_with(start) && line.ends_with(end)))
            .map(|(start, end)| format!("{start}…{end}"))
            .collect();
        if code != Some(0) || !missing.is_empty() {
            return Err(format!(
                "`cargo xtask run --guest {guest_arg}` (offline) exited with {code:?}, missing {missing:?} (the crate is kept for a look):\n{output}"
            ));
        }
        Ok(format!("new-guest {guest_arg}: built offline and booted in {seconds:.1} s"))
    })();
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

/// Runs the checks `filters` select (all without filters); returns the names of the failed
/// and every result, for the JUnit report.
pub fn run(filters: &[String]) -> (Vec<&'static str>, Suite) {
    let mut failed = Vec::new();
    let mut suite = Suite { name: "first steps (README)".to_string(), cases: Vec::new() };
    for (name, check) in CHECKS {
        if !filters.is_empty() && !filters.iter().any(|filter| name.contains(filter.as_str())) {
            continue;
        }
        println!("xtask test: {name}");
        let started = Instant::now();
        let result = check();
        let outcome = match result {
            Ok(summary) => {
                println!("xtask test: {name}: ok ({summary})");
                Outcome::Passed
            }
            Err(error) => {
                eprintln!("error: {name}: {error}");
                failed.push(name);
                let (message, output) = error.split_once('\n').unwrap_or((&error, ""));
                Outcome::Failed { message: message.to_string(), output: output.to_string() }
            }
        };
        suite.cases.push(TestCase { name: name.to_string(), time: started.elapsed(), outcome });
    }
    (failed, suite)
}
