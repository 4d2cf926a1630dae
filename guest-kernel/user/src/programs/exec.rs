//! execve: a program replacing the process (same pid, arguments and environment passed,
//! close-on-exec honoured), and its errors: ENOENT, ENOTDIR, ENOEXEC for what is not a
//! program for this machine, E2BIG for arguments over Linux's limits, EACCES for a
//! directory or a file without execute permission.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::expect_eq;
use crate::check::{Outcome, Suite};
use crate::process::{close, errno, errno_name, exit_now, fork, pipe, pipe_with, read_to_end, wait_for, Fork, Status};

/// `execve(path, argv, envp)` with C strings: returns only on failure, with the errno.
fn execve(path: &[u8], argv: &[&[u8]], envp: &[&[u8]]) -> i32 {
    let owned = |bytes: &[u8]| CString::new(bytes).expect("test strings hold no NUL");
    let path = owned(path);
    let argv: Vec<CString> = argv.iter().map(|word| owned(word)).collect();
    let envp: Vec<CString> = envp.iter().map(|word| owned(word)).collect();
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings.iter().map(|string| string.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
    };
    let (argv, envp) = (pointers(&argv), pointers(&envp));
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

/// Runs `execve` in a child and returns the errno it failed with (as the child's exit
/// code), or how the child ended if the program ran.
fn exec_in_child(path: &[u8], argv: &[&[u8]]) -> Result<Status, String> {
    match fork() {
        Err(error) => Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(execve(path, argv, &[])),
        Ok(Fork::Parent(pid)) => wait_for(pid),
    }
}

fn fails_with(what: &str, path: &[u8], expected: i32) -> Outcome {
    let status = exec_in_child(path, &[path])?;
    match status {
        Status::Exited(code) if code == expected => Ok(()),
        Status::Exited(code) => {
            Err(format!("{what}: execve failed with {}, expected {}", errno_name(code), errno_name(expected)))
        }
        other => Err(format!("{what}: execve succeeded ({other}), expected {}", errno_name(expected))),
    }
}

/// A scratch directory for files this program makes, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("test-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        Ok(Scratch(dir))
    }

    /// Writes `contents` to `name` with `mode` (given at creation, so no chmod is needed).
    fn file(&self, name: &str, contents: &[u8], mode: u32) -> Result<Vec<u8>, String> {
        use std::io::Write;
        let path = self.0.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        file.write_all(contents).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(path.into_os_string().into_encoded_bytes())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn missing_programs() -> Outcome {
    fails_with("a path that does not exist", b"/no/such/program", libc::ENOENT)?;
    fails_with("a path through a regular file", b"/etc/passwd/program", libc::ENOTDIR)?;
    fails_with("an empty path", b"", libc::ENOENT)
}

/// A 64-byte ELF header for a 64-bit little-endian executable of machine `machine`.
fn elf_header(machine: u16) -> Vec<u8> {
    let mut header = vec![0u8; 64];
    header[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    header[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    header[20..24].copy_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    header[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    header[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    header
}

fn not_programs() -> Outcome {
    let scratch = Scratch::new()?;
    let text = scratch.file("text", b"this is not a program\n", 0o755)?;
    fails_with("a text file without #!", &text, libc::ENOEXEC)?;
    let empty = scratch.file("empty", b"", 0o755)?;
    fails_with("an empty file", &empty, libc::ENOEXEC)?;
    let truncated = scratch.file("truncated", b"\x7fELF\x02\x01", 0o755)?;
    fails_with("a truncated ELF header", &truncated, libc::ENOEXEC)?;
    let arm = scratch.file("arm", &elf_header(40), 0o755)?;
    fails_with("an ELF file for another machine (EM_ARM)", &arm, libc::ENOEXEC)
}

fn permission_denied() -> Outcome {
    let scratch = Scratch::new()?;
    fails_with("a directory", b"/tmp", libc::EACCES)?;
    let plain = scratch.file("plain", &elf_header(62), 0o644)?;
    fails_with("a file without execute permission", &plain, libc::EACCES)
}

fn arguments_too_big() -> Outcome {
    // One string past Linux's MAX_ARG_STRLEN (32 pages).
    let long = vec![b'x'; 33 * 4096];
    let status = exec_in_child(b"/bin/true", &[b"true", &long])?;
    expect_eq("one argument of 132 KiB", status, Status::Exited(libc::E2BIG))?;
    // 160 arguments of 100 KiB, all the same string: 16 MiB, past any stack-derived limit.
    let piece = vec![b'y'; 100 * 1024];
    let many: Vec<&[u8]> = std::iter::once(&b"true"[..]).chain(std::iter::repeat_n(&piece[..], 160)).collect();
    let status = exec_in_child(b"/bin/true", &many)?;
    expect_eq("16 MiB of arguments", status, Status::Exited(libc::E2BIG))
}

fn programs_run() -> Outcome {
    expect_eq("/bin/true", exec_in_child(b"/bin/true", &[b"true"])?, Status::Exited(0))?;
    expect_eq("/bin/false", exec_in_child(b"/bin/false", &[b"false"])?, Status::Exited(1))?;
    expect_eq("sh -c 'exit 7'", exec_in_child(b"/bin/sh", &[b"sh", b"-c", b"exit 7"])?, Status::Exited(7))
}

fn arguments_and_environment_arrive() -> Outcome {
    let script: &[u8] = br#"test "$#" = 2 && test "$1" = "a b" && test "$2" = "" && test "$WORD" = "c=d""#;
    let status = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => {
            exit_now(100 + execve(b"/bin/sh", &[b"sh", b"-c", script, b"sh", b"a b", b""], &[b"WORD=c=d"]))
        }
        Ok(Fork::Parent(pid)) => wait_for(pid)?,
    };
    expect_eq("sh checking its arguments and environment", status, Status::Exited(0))
}

fn the_pid_stays_and_close_on_exec_is_honoured() -> Outcome {
    let (kept_reader, kept_writer) = pipe_with(0)?;
    let (closed_reader, closed_writer) = pipe()?;
    let kept = kept_writer.as_raw_fd();
    let closed = closed_writer.as_raw_fd();
    // fd 5 survives exec; fd 6 is close-on-exec, so writing to it fails in the new program.
    let script = b"echo $$ >&5; echo leaked 2>/dev/null >&6; exit 0";
    let child = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => {
            // Out of the way first (the pipes may be 5 or 6 themselves), then into place.
            // SAFETY: fcntl, dup2 and dup3 on this child's own descriptors.
            let moved = unsafe {
                let (kept_high, closed_high) =
                    (libc::fcntl(kept, libc::F_DUPFD, 10), libc::fcntl(closed, libc::F_DUPFD, 10));
                let moved = kept_high >= 10
                    && closed_high >= 10
                    && libc::dup2(kept_high, 5) == 5
                    && libc::dup3(closed_high, 6, libc::O_CLOEXEC) == 6;
                for fd in [kept, closed, kept_high, closed_high] {
                    if fd != 5 && fd != 6 {
                        close(fd);
                    }
                }
                moved
            };
            if !moved {
                exit_now(90);
            }
            exit_now(100 + execve(b"/bin/sh", &[b"sh", b"-c", script], &[]))
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop((kept_writer, closed_writer));
    let said = read_to_end(kept_reader.as_raw_fd()).map_err(errno_name)?;
    let leaked = read_to_end(closed_reader.as_raw_fd()).map_err(errno_name)?;
    expect_eq("the program", wait_for(child)?, Status::Exited(0))?;
    expect_eq("$$ after exec", String::from_utf8_lossy(&said).trim().to_string(), child.to_string())?;
    expect_eq("bytes through the close-on-exec descriptor", leaked.len(), 0)
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("exec");
    suite.case("programs_run", programs_run);
    suite.case("argv_envp", arguments_and_environment_arrive);
    suite.case("pid_and_cloexec", the_pid_stays_and_close_on_exec_is_honoured);
    suite.case("enoent_enotdir", missing_programs);
    suite.case("enoexec", not_programs);
    suite.case("eacces", permission_denied);
    suite.case("e2big", arguments_too_big);
    suite.finish()
}
