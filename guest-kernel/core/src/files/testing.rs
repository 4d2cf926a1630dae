//! What the file calls' tests share: a small world (a file system, one process, its
//! memory, a screen, a table of processes for `/proc`) and ways to call into it.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::console::ConsoleOutput;
use super::outcome::{CallResult, Outcome};
use super::proc::{MemoryTotals, ProcessInfo, ProcessState, ProcessStatus};
use super::process_files::ProcessFiles;
use super::world::Files;
use super::{dispatch, Caller};
use crate::fs::tree::{FileSystem, NewNode, ROOT};
use crate::linux::Errno;
use crate::process_tree::Pid;
use crate::user_memory::tests::Flat;
use crate::user_memory::UserMemory;

/// Where the test process's memory starts.
pub const BASE: u64 = 0x10_0000;
/// Its size: everything at or past `BASE + SIZE` is unmapped.
pub const SIZE: u64 = 0x4_0000;
/// Where test strings go.
pub const STRINGS: u64 = BASE;
/// A second string area.
pub const STRINGS2: u64 = BASE + 0x1000;
/// A large buffer for reads, records and structures.
pub const BUFFER: u64 = BASE + 0x2_0000;
/// An address no process memory is at.
pub const BAD: u64 = 0x10;

/// The screen: what the console showed.
#[derive(Clone, Default)]
pub struct Screen(pub Rc<RefCell<Vec<u8>>>);

impl ConsoleOutput for Screen {
    fn write(&mut self, bytes: &[u8]) {
        self.0.borrow_mut().extend_from_slice(bytes);
    }
}

/// A process table for `/proc`.
#[derive(Default)]
pub struct Processes {
    pub table: Vec<(ProcessStatus, Vec<u8>)>,
    pub uptime_ns: u64,
    pub idle_ns: u64,
    pub memory: MemoryTotals,
}

impl Processes {
    pub fn add(&mut self, pid: Pid, parent: Pid, group: Pid, session: Pid, name: &str, arguments: &[u8]) {
        let status = ProcessStatus {
            pid,
            parent,
            group,
            session,
            name: name.as_bytes().to_vec(),
            state: ProcessState::Sleeping,
            ..ProcessStatus::default()
        };
        self.table.push((status, arguments.to_vec()));
        self.table.sort_by_key(|(status, _)| status.pid);
    }
}

impl ProcessInfo for Processes {
    fn pids(&self) -> Vec<Pid> {
        self.table.iter().map(|(status, _)| status.pid).collect()
    }

    fn status(&self, pid: Pid) -> Option<ProcessStatus> {
        self.table.iter().find(|(status, _)| status.pid == pid).map(|(status, _)| status.clone())
    }

    fn command_line(&self, pid: Pid) -> Vec<u8> {
        self.table.iter().find(|(status, _)| status.pid == pid).map(|(_, line)| line.clone()).unwrap_or_default()
    }

    fn uptime_ns(&self) -> u64 {
        self.uptime_ns
    }

    fn idle_ns(&self) -> u64 {
        self.idle_ns
    }

    fn memory(&self) -> MemoryTotals {
        self.memory
    }
}

/// One process in a small system: `/bin/busybox` (a 5000-byte executable), `/bin/sh`
/// linking to it, `/etc/motd` ("hello\n"), `/tmp`; init (1) and a shell (pid 7, its own
/// group and session) in the process table; the shell calls.
pub struct World {
    pub files: Files,
    pub process: ProcessFiles,
    pub memory: Flat,
    pub processes: Processes,
    pub screen: Screen,
    pub pid: Pid,
    pub timed_out: bool,
}

impl World {
    pub fn new() -> World {
        let mut fs = FileSystem::new(1 << 22);
        fs.set_now(1_000_000_000_000);
        let bin = fs.create(ROOT, b"bin", NewNode::Directory, 0o755).unwrap();
        let program: Vec<u8> = (0..5000u32).map(|n| n as u8).collect();
        fs.create(bin, b"busybox", NewNode::FileWith(&program), 0o755).unwrap();
        fs.create(bin, b"sh", NewNode::Symlink(b"busybox"), 0o777).unwrap();
        let etc = fs.create(ROOT, b"etc", NewNode::Directory, 0o755).unwrap();
        fs.create(etc, b"motd", NewNode::FileWith(b"hello\n"), 0o644).unwrap();
        fs.create(ROOT, b"tmp", NewNode::Directory, 0o1777).unwrap();
        let screen = Screen::default();
        let mut files = Files::new(fs, Box::new(screen.clone()), 8).unwrap();
        let process = ProcessFiles::new(&mut files);
        let mut processes = Processes {
            uptime_ns: 12_340_000_000,
            idle_ns: 5_670_000_000,
            memory: MemoryTotals { total_bytes: 64 << 20, free_bytes: 40 << 20, available_bytes: 48 << 20 },
            ..Processes::default()
        };
        processes.add(1, 0, 1, 1, "init", b"/sbin/init\0");
        processes.add(7, 1, 7, 7, "sh", b"sh\0-i\0");
        World {
            files,
            process,
            memory: Flat { base: BASE, bytes: alloc::vec![0; SIZE as usize] },
            processes,
            screen,
            pid: 7,
            timed_out: false,
        }
    }

    /// Runs system call `number`.
    pub fn call(&mut self, number: u32, arguments: &[u64]) -> CallResult {
        let mut registers = [0u64; 6];
        registers[..arguments.len()].copy_from_slice(arguments);
        let mut caller = Caller {
            pid: self.pid,
            process: &mut self.process,
            memory: &mut self.memory,
            processes: &self.processes,
            timed_out: self.timed_out,
        };
        dispatch(&mut self.files, &mut caller, u64::from(number), registers).expect("a file call")
    }

    /// Runs a call that must complete, and returns its value.
    #[track_caller]
    pub fn ok(&mut self, number: u32, arguments: &[u64]) -> u64 {
        match self.call(number, arguments) {
            Ok(Outcome::Done(value)) => value,
            other => panic!("call {number} {arguments:x?}: {other:?}"),
        }
    }

    /// Runs a call that must fail, and returns its error.
    #[track_caller]
    pub fn error(&mut self, number: u32, arguments: &[u64]) -> Errno {
        match self.call(number, arguments) {
            Err(error) => error,
            other => panic!("call {number} {arguments:x?} should fail: {other:?}"),
        }
    }

    /// Puts `text` and a NUL at `address`; returns the address.
    pub fn string(&mut self, address: u64, text: &[u8]) -> u64 {
        self.memory.write(address, text).unwrap();
        self.memory.write(address + text.len() as u64, &[0]).unwrap();
        address
    }

    /// Puts `bytes` at `address`; returns the address.
    pub fn put(&mut self, address: u64, bytes: &[u8]) -> u64 {
        self.memory.write(address, bytes).unwrap();
        address
    }

    /// The `length` bytes at `address`.
    pub fn bytes(&self, address: u64, length: usize) -> Vec<u8> {
        let mut bytes = alloc::vec![0; length];
        self.memory.read(address, &mut bytes).unwrap();
        bytes
    }

    /// Opens `path` with `flags` (and mode 0644); the descriptor.
    #[track_caller]
    pub fn open(&mut self, path: &[u8], flags: u32) -> u64 {
        let path = self.string(STRINGS, path);
        self.ok(linux_raw_sys::general::__NR_open, &[path, u64::from(flags), 0o644])
    }

    /// Reads up to `count` bytes from `fd` into [`BUFFER`]; the bytes.
    #[track_caller]
    pub fn read(&mut self, fd: u64, count: usize) -> Vec<u8> {
        let length = self.ok(linux_raw_sys::general::__NR_read, &[fd, BUFFER, count as u64]) as usize;
        self.bytes(BUFFER, length)
    }

    /// Writes `bytes` to `fd` from [`BUFFER`]; the count written.
    #[track_caller]
    pub fn write(&mut self, fd: u64, bytes: &[u8]) -> u64 {
        self.put(BUFFER, bytes);
        self.ok(linux_raw_sys::general::__NR_write, &[fd, BUFFER, bytes.len() as u64])
    }

    /// Makes a pipe; its read and write descriptors.
    #[track_caller]
    pub fn pipe(&mut self, flags: u32) -> (u64, u64) {
        self.ok(linux_raw_sys::general::__NR_pipe2, &[STRINGS2, u64::from(flags)]);
        self.pair_at(STRINGS2)
    }

    /// Makes an `AF_UNIX` socket pair of type `kind` (with flags); its two descriptors.
    #[track_caller]
    pub fn socket_pair(&mut self, kind: u32) -> (u64, u64) {
        let domain = u64::from(linux_raw_sys::net::AF_UNIX);
        self.ok(linux_raw_sys::general::__NR_socketpair, &[domain, u64::from(kind), 0, STRINGS2]);
        self.pair_at(STRINGS2)
    }

    /// The two `int` descriptors at `address`.
    fn pair_at(&self, address: u64) -> (u64, u64) {
        let ends = self.bytes(address, 8);
        (
            u64::from(u32::from_le_bytes(ends[..4].try_into().unwrap())),
            u64::from(u32::from_le_bytes(ends[4..].try_into().unwrap())),
        )
    }

    /// What the screen showed since the last look.
    pub fn screen(&self) -> Vec<u8> {
        core::mem::take(&mut *self.screen.0.borrow_mut())
    }
}
