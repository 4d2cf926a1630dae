//! /proc as `ps`, `uptime` and `free` read it: `/proc/self`, `/proc/<pid>/stat` (a running
//! process and a zombie), the pid directories, /proc/uptime and /proc/meminfo.

use std::process::ExitCode;
use std::time::Duration;

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{errno_name, exit_now, fork, sleep_ms, wait_for, Fork, Status};
use crate::signals::{own_pid, parent_pid};

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("cannot read {path}: {error}"))
}

/// The fields of a stat line: pid, comm (without parentheses), then the rest split on
/// spaces (state is the first of them). comm may hold spaces and parentheses, so it ends at
/// the last `)`.
fn stat_fields(line: &str) -> Result<(i32, String, Vec<String>), String> {
    let open = line.find(" (").ok_or_else(|| format!("no ' (' in {line:?}"))?;
    let close = line.rfind(") ").ok_or_else(|| format!("no ') ' in {line:?}"))?;
    let pid = line[..open].parse().map_err(|_| format!("pid field of {line:?}"))?;
    let comm = line[open + 2..close].to_string();
    let rest = line[close + 2..].split_whitespace().map(str::to_string).collect();
    Ok((pid, comm, rest))
}

/// The name Linux gives this process (`comm`): the last component of the path it was
/// started from (which callers pass as argv[0]), cut to 15 bytes.
fn own_name() -> String {
    let invoked = std::env::args().next().unwrap_or_default();
    let base = invoked.rsplit('/').next().unwrap_or_default();
    base.chars().take(15).collect()
}

fn own_stat() -> Outcome {
    let line = read("/proc/self/stat")?;
    let (pid, comm, rest) = stat_fields(&line)?;
    expect_eq("pid", pid, own_pid())?;
    expect_eq("comm", comm, own_name())?;
    // Fields 3.. of proc(5): state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, utime, stime, cutime, cstime, priority, nice,
    // num_threads, itrealvalue, starttime, vsize, rss: `ps` reads up to rss.
    ensure(rest.len() >= 22, || format!("{} fields after comm, ps needs 22: {line:?}", rest.len()))?;
    expect_eq("state", rest[0].as_str(), "R")?;
    expect_eq("ppid", rest[1].parse::<i32>().ok(), Some(parent_pid()))?;
    for (index, name) in [(11, "utime"), (12, "stime"), (19, "starttime"), (20, "vsize"), (21, "rss")] {
        ensure(rest[index].parse::<u64>().is_ok(), || format!("{name} is not a number in {line:?}"))?;
    }
    ensure(rest[20].parse::<u64>().unwrap_or(0) > 0, || format!("vsize is 0 in {line:?}"))?;
    expect_eq("num_threads", rest[17].as_str(), "1")
}

fn self_link_and_pid_directories() -> Outcome {
    let target = std::fs::read_link("/proc/self").map_err(|error| format!("readlink /proc/self: {error}"))?;
    expect_eq("/proc/self", target.to_string_lossy().into_owned(), own_pid().to_string())?;
    let names: Vec<String> = std::fs::read_dir("/proc")
        .map_err(|error| format!("cannot list /proc: {error}"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .collect();
    for pid in [own_pid(), parent_pid(), 1] {
        ensure(names.contains(&pid.to_string()), || format!("/proc lists no directory {pid}: {names:?}"))?;
    }
    for file in ["uptime", "meminfo", "self"] {
        ensure(names.iter().any(|name| name == file), || format!("/proc lists no {file}"))?;
    }
    Ok(())
}

fn a_zombie_and_a_sleeper() -> Outcome {
    let zombie = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(0),
        Ok(Fork::Parent(pid)) => pid,
    };
    let sleeper = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => {
            sleep_ms(2000);
            exit_now(0)
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    sleep_ms(100);
    let zombie_line = read(&format!("/proc/{zombie}/stat"));
    let sleeper_line = read(&format!("/proc/{sleeper}/stat"));
    // SAFETY: kill takes no memory arguments; the sleeper is this process's child.
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
    let (zombie_status, sleeper_status) = (wait_for(zombie)?, wait_for(sleeper)?);
    expect_eq("the exited child", zombie_status, Status::Exited(0))?;
    expect_eq("the sleeping child", sleeper_status, Status::Signaled(libc::SIGKILL))?;
    let (pid, _, rest) = stat_fields(&zombie_line?)?;
    expect_eq("the exited child's pid and state", (pid, rest[0].as_str()), (zombie, "Z"))?;
    let (pid, comm, rest) = stat_fields(&sleeper_line?)?;
    expect_eq("the sleeping child's pid, comm and state", (pid, comm, rest[0].as_str()), (sleeper, own_name(), "S"))?;
    expect_eq("the sleeping child's ppid", rest[1].parse::<i32>().ok(), Some(own_pid()))
}

fn uptime(text: &str) -> Result<(f64, f64), String> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(up)), Some(Ok(idle)), None) if text.ends_with('\n') => Ok((up, idle)),
        _ => Err(format!("/proc/uptime is {text:?}, not two numbers and a newline")),
    }
}

fn uptime_advances() -> Outcome {
    let (first, idle) = uptime(&read("/proc/uptime")?)?;
    sleep_ms(300);
    let (second, _) = uptime(&read("/proc/uptime")?)?;
    ensure(first > 0.0 && idle >= 0.0, || format!("uptime {first}, idle {idle}"))?;
    let advanced = Duration::from_secs_f64((second - first).max(0.0));
    ensure(advanced >= Duration::from_millis(250) && advanced <= Duration::from_secs(3), || {
        format!("uptime advanced {advanced:?} over a 300 ms sleep")
    })
}

fn meminfo_lists_memory() -> Outcome {
    let text = read("/proc/meminfo")?;
    let value = |key: &str| -> Result<u64, String> {
        let line = text
            .lines()
            .find(|line| line.split(':').next() == Some(key))
            .ok_or_else(|| format!("/proc/meminfo has no {key} line"))?;
        let rest = line[key.len() + 1..].trim();
        let number = rest.strip_suffix(" kB").ok_or_else(|| format!("{line:?} does not end in ' kB'"))?;
        number.trim().parse().map_err(|_| format!("{line:?} holds no number"))
    };
    let (total, free, available) = (value("MemTotal")?, value("MemFree")?, value("MemAvailable")?);
    ensure(total > 0, || "MemTotal is 0".into())?;
    ensure(free <= total && available <= total, || {
        format!("MemTotal {total}, MemFree {free}, MemAvailable {available}")
    })
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("proc");
    suite.case("self_stat", own_stat);
    suite.case("self_link_and_pids", self_link_and_pid_directories);
    suite.case("zombie_and_sleeper_stat", a_zombie_and_a_sleeper);
    suite.case("uptime", uptime_advances);
    suite.case("meminfo", meminfo_lists_memory);
    suite.finish()
}
