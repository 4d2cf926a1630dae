//! fork, wait4 and exit: exit codes, many children, waiting for one pid, WNOHANG, orphans.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{
    close, errno_name, exit_now, fork, in_child, pipe, read, read_to_end, sleep_ms, wait, wait_for, write_all, Fork,
    Status,
};
use crate::signals::{kill, own_pid, parent_pid};

fn spawn(body: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    match fork() {
        Err(error) => Err(format!("fork failed: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(body()),
        Ok(Fork::Parent(pid)) => Ok(pid),
    }
}

fn exit_codes() -> Outcome {
    for code in [0, 1, 2, 42, 127, 128, 255] {
        expect_eq(&format!("child exiting with {code}"), in_child(|| code)?, Status::Exited(code))?;
    }
    // Only the low 8 bits of the code reach the parent, as on Linux.
    expect_eq("child exiting with 256 + 3", in_child(|| 259)?, Status::Exited(3))
}

fn identities() -> Outcome {
    let (reader, writer) = pipe()?;
    let parent = own_pid();
    let child = spawn(|| {
        let ids = format!("{} {}", own_pid(), parent_pid());
        i32::from(write_all(writer.as_raw_fd(), ids.as_bytes()).is_err())
    })?;
    drop(writer);
    let reported = read_to_end(reader.as_raw_fd()).map_err(errno_name)?;
    expect_eq("child's exit", wait_for(child)?, Status::Exited(0))?;
    expect_eq(
        "child's getpid and getppid",
        String::from_utf8_lossy(&reported).into_owned(),
        format!("{child} {parent}"),
    )
}

fn many_children() -> Outcome {
    const COUNT: i32 = 40;
    let mut expected = BTreeMap::new();
    for index in 0..COUNT {
        expected.insert(spawn(move || index + 1)?, Status::Exited(index + 1));
    }
    let mut reaped = BTreeMap::new();
    for _ in 0..COUNT {
        let (pid, status) = wait(-1, 0).map_err(|error| format!("wait4(-1): {}", errno_name(error)))?;
        reaped.insert(pid, status);
    }
    expect_eq("children reaped with their codes", &reaped, &expected)?;
    expect_eq("wait4(-1) with no children left", wait(-1, 0).err(), Some(libc::ECHILD))
}

fn wait_for_one_pid() -> Outcome {
    let slow = spawn(|| {
        sleep_ms(100);
        11
    })?;
    let quick = spawn(|| 22)?;
    expect_eq("the slow child, waited for by pid", wait(slow, 0), Ok((slow, Status::Exited(11))))?;
    expect_eq("the quick child, still there", wait(quick, 0), Ok((quick, Status::Exited(22))))?;
    expect_eq("a pid that is not a child", wait(quick, 0).err(), Some(libc::ECHILD))
}

fn no_hang() -> Outcome {
    let (reader, writer) = pipe()?;
    let (read_end, write_end) = (reader.as_raw_fd(), writer.as_raw_fd());
    let child = spawn(|| {
        close(write_end);
        let mut byte = [0u8];
        // Blocks until the parent closes its write end.
        match read(read_end, &mut byte) {
            Ok(0) => 3,
            _ => 4,
        }
    })?;
    expect_eq("WNOHANG while the child runs", wait(child, libc::WNOHANG), Ok((0, Status::Exited(0))))?;
    drop(writer);
    expect_eq("the child after its pipe closed", wait(child, 0), Ok((child, Status::Exited(3))))?;
    expect_eq("WNOHANG with no children", wait(-1, libc::WNOHANG).err(), Some(libc::ECHILD))
}

fn zombie_until_waited() -> Outcome {
    let child = spawn(|| 5)?;
    sleep_ms(50);
    // A zombie still exists: signal 0 finds it.
    expect_eq("kill(zombie, 0)", kill(child, 0), Ok(()))?;
    expect_eq("reaping the zombie", wait(child, 0), Ok((child, Status::Exited(5))))?;
    expect_eq("kill(reaped pid, 0)", kill(child, 0), Err(libc::ESRCH))
}

fn orphans_are_adopted_and_reaped() -> Outcome {
    let (reader, writer) = pipe()?;
    let middle = spawn(move || {
        let middle = own_pid();
        let grandchild = spawn(move || {
            // Wait (bounded) until the middle process is gone, then report the new parent.
            let start = Instant::now();
            while parent_pid() == middle && start.elapsed() < Duration::from_secs(5) {
                sleep_ms(5);
            }
            let report = format!("{} {}", own_pid(), parent_pid());
            i32::from(write_all(writer.as_raw_fd(), report.as_bytes()).is_err())
        });
        i32::from(grandchild.is_err())
    })?;
    expect_eq("the middle process", wait_for(middle)?, Status::Exited(0))?;
    let report = read_to_end(reader.as_raw_fd()).map_err(errno_name)?;
    let report = String::from_utf8_lossy(&report).into_owned();
    let mut fields = report.split(' ').map(str::parse::<libc::pid_t>);
    let (Some(Ok(grandchild)), Some(Ok(adopter))) = (fields.next(), fields.next()) else {
        return Err(format!("the grandchild reported {report:?}"));
    };
    ensure(adopter != middle && adopter > 0, || format!("orphan's parent is {adopter}, its dead parent was {middle}"))?;
    // Its new parent (init) reaps it: the pid disappears.
    let start = Instant::now();
    while kill(grandchild, 0).is_ok() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!("orphan {grandchild} (parent {adopter}) was not reaped within 5 s"));
        }
        sleep_ms(10);
    }
    Ok(())
}

fn fork_copies_the_address_space() -> Outcome {
    let mut value = vec![1u8; 8192];
    let status = in_child(|| {
        value.fill(2);
        i32::from(value.iter().any(|&byte| byte != 2))
    })?;
    expect_eq("the child's own copy", status, Status::Exited(0))?;
    ensure(value.iter().all(|&byte| byte == 1), || "the child's writes reached the parent".into())
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("fork");
    suite.case("exit_codes", exit_codes);
    suite.case("getpid_getppid", identities);
    suite.case("many_children", many_children);
    suite.case("wait_by_pid", wait_for_one_pid);
    suite.case("wnohang", no_hang);
    suite.case("zombie_until_waited", zombie_until_waited);
    suite.case("orphans_adopted_and_reaped", orphans_are_adopted_and_reaped);
    suite.case("copy_on_write", fork_copies_the_address_space);
    suite.finish()
}
