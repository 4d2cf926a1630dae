//! Pipes: data through, blocking reads and writes, end of file only when every writer is
//! gone, SIGPIPE and EPIPE when every reader is, non-blocking ends, large transfers.

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{
    close, errno_name, exit_now, fork, in_child, pipe, pipe_with, read, read_to_end, sleep_ms, wait_for, write,
    write_all, Fork, Status,
};
use crate::signals::{install, Action};

/// Linux's pipe capacity (16 pages).
const CAPACITY: usize = 16 * 4096;

fn spawn(body: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    match fork() {
        Err(error) => Err(format!("fork failed: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(body()),
        Ok(Fork::Parent(pid)) => Ok(pid),
    }
}

fn through_one_process() -> Outcome {
    let (reader, writer) = pipe()?;
    expect_eq("write", write(writer.as_raw_fd(), b"hello, pipe"), Ok(11))?;
    let mut buffer = [0u8; 64];
    let count = read(reader.as_raw_fd(), &mut buffer).map_err(errno_name)?;
    expect_eq("read", &buffer[..count], &b"hello, pipe"[..])
}

fn end_of_file_after_the_writer_exits() -> Outcome {
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let child = spawn(|| {
        let mut failed = false;
        for line in ["one\n", "two\n", "three\n"] {
            failed |= write_all(write_end, line.as_bytes()).is_err();
            sleep_ms(10);
        }
        i32::from(failed)
    })?;
    drop(writer);
    let all = read_to_end(reader.as_raw_fd()).map_err(errno_name)?;
    expect_eq("the writer", wait_for(child)?, Status::Exited(0))?;
    expect_eq("what was read", String::from_utf8_lossy(&all).into_owned(), "one\ntwo\nthree\n".to_string())
}

fn end_of_file_waits_for_every_writer() -> Outcome {
    let (reader, writer) = pipe_with(libc::O_NONBLOCK | libc::O_CLOEXEC)?;
    let copy = writer.try_clone().map_err(|error| format!("dup: {error}"))?;
    drop(writer);
    let mut buffer = [0u8; 8];
    expect_eq("read with one writer still open", read(reader.as_raw_fd(), &mut buffer), Err(libc::EAGAIN))?;
    drop(copy);
    expect_eq("read after the last writer closed", read(reader.as_raw_fd(), &mut buffer), Ok(0))
}

fn a_read_blocks_until_data_comes() -> Outcome {
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let start = Instant::now();
    let child = spawn(|| {
        sleep_ms(100);
        i32::from(write_all(write_end, b"late").is_err())
    })?;
    drop(writer);
    let mut buffer = [0u8; 8];
    let count = read(reader.as_raw_fd(), &mut buffer).map_err(errno_name)?;
    let waited = start.elapsed();
    expect_eq("the writer", wait_for(child)?, Status::Exited(0))?;
    expect_eq("data", &buffer[..count], &b"late"[..])?;
    ensure(waited >= Duration::from_millis(90), || {
        format!("read returned after {waited:?}, before the data was written")
    })
}

/// A checksum both sides compute: position-dependent, so reordering shows.
fn checksum(bytes: &[u8], start: u64) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0u64, |sum, (index, &byte)| sum.wrapping_mul(31).wrapping_add(u64::from(byte) ^ (start + index as u64)))
}

fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index * 7 + index / 4096) as u8).collect()
}

fn large_transfer_blocks_the_writer() -> Outcome {
    const SIZE: usize = 1 << 20;
    let (data_reader, data_writer) = pipe()?;
    let (result_reader, result_writer) = pipe()?;
    let (data_read_end, data_write_end) = (data_reader.as_raw_fd(), data_writer.as_raw_fd());
    let result_write_end = result_writer.as_raw_fd();
    let child = spawn(|| {
        close(data_write_end);
        // Read slowly at first so the writer fills the pipe and must block.
        sleep_ms(50);
        let received = read_to_end(data_read_end).unwrap_or_default();
        let report = format!("{} {}", received.len(), checksum(&received, 0));
        i32::from(write_all(result_write_end, report.as_bytes()).is_err())
    })?;
    drop((data_reader, result_writer));
    let data = pattern(SIZE);
    write_all(data_writer.as_raw_fd(), &data).map_err(|error| format!("writing 1 MiB: {}", errno_name(error)))?;
    drop(data_writer);
    let report = read_to_end(result_reader.as_raw_fd()).map_err(errno_name)?;
    expect_eq("the reader", wait_for(child)?, Status::Exited(0))?;
    expect_eq(
        "length and checksum received",
        String::from_utf8_lossy(&report).into_owned(),
        format!("{SIZE} {}", checksum(&data, 0)),
    )
}

fn capacity_and_non_blocking_writes() -> Outcome {
    let (_reader, writer) = pipe_with(libc::O_NONBLOCK | libc::O_CLOEXEC)?;
    let chunk = [0x5au8; 4096];
    let mut total = 0;
    loop {
        match write(writer.as_raw_fd(), &chunk) {
            Ok(count) => total += count,
            Err(libc::EAGAIN) => break,
            Err(error) => return Err(format!("write after {total} bytes: {}", errno_name(error))),
        }
        if total > 16 * CAPACITY {
            return Err(format!("{total} bytes went into a pipe nobody reads"));
        }
    }
    expect_eq("bytes a full pipe took", total, CAPACITY)
}

fn small_writes_are_atomic() -> Outcome {
    // Two writers of 512-byte records (below PIPE_BUF): no record is split by the other's.
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let writer_of = |byte: u8| {
        move || {
            let record = [byte; 512];
            let failed = (0..64).any(|_| write_all(write_end, &record).is_err());
            i32::from(failed)
        }
    };
    let first = spawn(writer_of(b'a'))?;
    let second = spawn(writer_of(b'b'))?;
    drop(writer);
    let all = read_to_end(reader.as_raw_fd()).map_err(errno_name)?;
    expect_eq("first writer", wait_for(first)?, Status::Exited(0))?;
    expect_eq("second writer", wait_for(second)?, Status::Exited(0))?;
    expect_eq("bytes read", all.len(), 2 * 64 * 512)?;
    for (index, record) in all.chunks(512).enumerate() {
        ensure(record.iter().all(|&byte| byte == record[0]), || format!("record {index} is interleaved"))?;
    }
    Ok(())
}

fn sigpipe_kills_a_writer_without_readers() -> Outcome {
    let (reader, writer) = pipe()?;
    drop(reader);
    let write_end = writer.as_raw_fd();
    // Rust programs start with SIGPIPE ignored; the child restores the default action.
    let status = in_child(|| {
        if install(libc::SIGPIPE, Action::Default).is_err() {
            return 90;
        }
        let _ = write(write_end, b"x");
        91
    })?;
    expect_eq("writer's end", status, Status::Signaled(libc::SIGPIPE))
}

fn epipe_when_sigpipe_is_ignored() -> Outcome {
    let (reader, writer) = pipe()?;
    drop(reader);
    install(libc::SIGPIPE, Action::Ignore)?;
    expect_eq("write without readers", write(writer.as_raw_fd(), b"x"), Err(libc::EPIPE))
}

fn pipes_carry_the_dup2_of_a_standard_descriptor() -> Outcome {
    // The way a shell builds `a | b`: the writer's stdout is the pipe.
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let child = spawn(|| {
        // SAFETY: dup2 onto descriptor 1 of this child only.
        if unsafe { libc::dup2(write_end, 1) } != 1 {
            return 1;
        }
        close(write_end);
        print!("through stdout");
        use std::io::Write;
        i32::from(std::io::stdout().flush().is_err())
    })?;
    drop(writer);
    let all = read_to_end(reader.as_raw_fd()).map_err(errno_name)?;
    expect_eq("the writer", wait_for(child)?, Status::Exited(0))?;
    expect_eq("read", String::from_utf8_lossy(&all).into_owned(), "through stdout".to_string())
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("pipe");
    suite.case("through_one_process", through_one_process);
    suite.case("eof_after_writer_exits", end_of_file_after_the_writer_exits);
    suite.case("eof_waits_for_every_writer", end_of_file_waits_for_every_writer);
    suite.case("read_blocks_until_data", a_read_blocks_until_data_comes);
    suite.case("large_transfer", large_transfer_blocks_the_writer);
    suite.case("capacity_and_eagain", capacity_and_non_blocking_writes);
    suite.case("small_writes_atomic", small_writes_are_atomic);
    suite.case("sigpipe", sigpipe_kills_a_writer_without_readers);
    suite.case("epipe", epipe_when_sigpipe_is_ignored);
    suite.case("dup2_stdout", pipes_carry_the_dup2_of_a_standard_descriptor);
    suite.finish()
}
