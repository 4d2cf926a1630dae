//! `/proc`: files about the running system, made from what the kernel reports through
//! [`ProcessInfo`] when they are opened.
//!
//! The tree is small and fixed: `/proc/uptime`, `/proc/meminfo`, `/proc/mounts`,
//! `/proc/self` (a symbolic link to the caller's directory), and a directory per process,
//! `/proc/<pid>`, holding `stat`, `status`, `cmdline` and `comm`, enough for `ps`, `top`'s
//! process list, `pidof` and `killall`. Formats are Linux's (proc(5)): times in clock
//! ticks of [`CLOCK_TICKS_PER_SECOND`], `stat`'s 52 fields in Linux's order. Everything
//! here is read-only. Each file's bytes are made when it is opened, so one `read` after
//! another sees one consistent snapshot.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::fs::tree::Metadata;
use crate::fs::FileType;
use crate::linux::Errno;
use crate::process_tree::Pid;

/// Clock ticks per second in `/proc` times (Linux's `USER_HZ`; what `sysconf(_SC_CLK_TCK)`
/// and the `AT_CLKTCK` auxiliary vector entry say).
pub const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// A process's run state, as `stat`'s third field spells it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ProcessState {
    /// Running or ready to run (`R`).
    #[default]
    Running,
    /// Asleep in a system call (`S`).
    Sleeping,
    /// Stopped by a signal (`T`).
    Stopped,
    /// Exited, not yet waited for (`Z`).
    Zombie,
}

impl ProcessState {
    const fn letter(self) -> char {
        match self {
            ProcessState::Running => 'R',
            ProcessState::Sleeping => 'S',
            ProcessState::Stopped => 'T',
            ProcessState::Zombie => 'Z',
        }
    }

    const fn name(self) -> &'static str {
        match self {
            ProcessState::Running => "running",
            ProcessState::Sleeping => "sleeping",
            ProcessState::Stopped => "stopped",
            ProcessState::Zombie => "zombie",
        }
    }
}

/// What the kernel knows of one process, for `/proc/<pid>/stat` and `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessStatus {
    /// Its pid.
    pub pid: Pid,
    /// Its parent's pid (0 for init).
    pub parent: Pid,
    /// Its process group.
    pub group: Pid,
    /// Its session.
    pub session: Pid,
    /// Its command name (the executable's file name; only the first 15 bytes are shown,
    /// as Linux's `TASK_COMM_LEN` keeps).
    pub name: Vec<u8>,
    /// Its run state.
    pub state: ProcessState,
    /// Its user (owner of `/proc/<pid>`, which `ps` shows).
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Nanoseconds it ran in user mode.
    pub user_ns: u64,
    /// Nanoseconds the kernel ran for it.
    pub system_ns: u64,
    /// User time of its children that were waited for.
    pub children_user_ns: u64,
    /// System time of its children that were waited for.
    pub children_system_ns: u64,
    /// When it started, nanoseconds after boot.
    pub start_ns: u64,
    /// Bytes of its address space.
    pub virtual_bytes: u64,
    /// Pages of memory it holds.
    pub resident_pages: u64,
    /// Page faults served without I/O.
    pub minor_faults: u64,
    /// Pending signals (bit n-1 for signal n).
    pub pending: u64,
    /// Blocked signals.
    pub blocked: u64,
    /// Ignored signals.
    pub ignored: u64,
    /// Signals with a handler.
    pub caught: u64,
    /// A zombie's `wait4` status word, 0 otherwise.
    pub exit_code: u32,
}

/// Memory totals for `/proc/meminfo`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTotals {
    /// Memory the kernel manages.
    pub total_bytes: u64,
    /// Memory not in use.
    pub free_bytes: u64,
    /// Memory a new program could get.
    pub available_bytes: u64,
}

/// What the kernel tells `/proc`. Implemented by the kernel over its process table.
pub trait ProcessInfo {
    /// Every process, zombies included, in ascending order.
    fn pids(&self) -> Vec<Pid>;

    /// The process `pid`, if it exists (zombies included).
    fn status(&self, pid: Pid) -> Option<ProcessStatus>;

    /// The process's arguments as `execve` gave them, each followed by a NUL (empty for a
    /// zombie).
    fn command_line(&self, pid: Pid) -> Vec<u8>;

    /// Nanoseconds since boot.
    fn uptime_ns(&self) -> u64;

    /// Nanoseconds the processor spent idle since boot.
    fn idle_ns(&self) -> u64;

    /// Memory totals.
    fn memory(&self) -> MemoryTotals;
}

/// What the files layer adds to a `/proc` file: the terminal's numbers and the file
/// system's size.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Context {
    /// The console's device number, encoded as `stat`'s `tty_nr`.
    pub terminal: u32,
    /// The console's foreground process group (`tpgid`).
    pub foreground: Pid,
    /// Bytes the in-memory file system holds (`Cached`, `Shmem`: it lives in RAM).
    pub file_bytes: u64,
}

/// A node of `/proc`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProcNode {
    /// `/proc` itself.
    Root,
    /// `/proc/uptime`.
    Uptime,
    /// `/proc/meminfo`.
    Meminfo,
    /// `/proc/mounts`.
    Mounts,
    /// `/proc/self`.
    SelfLink,
    /// `/proc/<pid>`.
    Process(Pid),
    /// A file of `/proc/<pid>`.
    ProcessFile(Pid, ProcessFile),
}

/// The files of `/proc/<pid>`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProcessFile {
    /// `cmdline`: the arguments, NUL-separated.
    Cmdline,
    /// `comm`: the command name and a newline.
    Comm,
    /// `stat`: one line of 52 fields.
    Stat,
    /// `status`: `Name:` ... lines.
    Status,
}

/// `/proc`'s own files, in name order (listings show them before the processes).
const ROOT_FILES: [(&[u8], ProcNode); 4] = [
    (b"meminfo", ProcNode::Meminfo),
    (b"mounts", ProcNode::Mounts),
    (b"self", ProcNode::SelfLink),
    (b"uptime", ProcNode::Uptime),
];

/// `/proc/<pid>`'s files, in name order.
const PROCESS_FILES: [(&[u8], ProcessFile); 4] = [
    (b"cmdline", ProcessFile::Cmdline),
    (b"comm", ProcessFile::Comm),
    (b"stat", ProcessFile::Stat),
    (b"status", ProcessFile::Status),
];

/// A directory entry of `/proc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcEntry {
    /// Its name.
    pub name: Vec<u8>,
    /// What it names.
    pub node: ProcNode,
}

/// A pid written the way `/proc` names it: decimal, no sign, no leading zero.
fn parse_pid(name: &[u8]) -> Option<Pid> {
    if name.is_empty() || name.len() > 10 || (name.len() > 1 && name[0] == b'0') {
        return None;
    }
    let text = core::str::from_utf8(name).ok()?;
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&pid| pid != 0)
}

fn exists(processes: &dyn ProcessInfo, pid: Pid) -> Result<(), Errno> {
    processes.status(pid).map(|_| ()).ok_or(Errno::ENOENT)
}

impl ProcNode {
    /// The entry `name` of this directory (`.` included; `..` of the root is the mount
    /// point's business).
    pub(crate) fn lookup(self, name: &[u8], processes: &dyn ProcessInfo) -> Result<ProcNode, Errno> {
        match self {
            ProcNode::Root => match name {
                b"." => Ok(ProcNode::Root),
                _ => {
                    if let Some((_, node)) = ROOT_FILES.iter().find(|(file, _)| *file == name) {
                        return Ok(*node);
                    }
                    let pid = parse_pid(name).ok_or(Errno::ENOENT)?;
                    exists(processes, pid)?;
                    Ok(ProcNode::Process(pid))
                }
            },
            ProcNode::Process(pid) => {
                exists(processes, pid)?;
                match name {
                    b"." => Ok(self),
                    b".." => Ok(ProcNode::Root),
                    _ => PROCESS_FILES
                        .iter()
                        .find(|(file, _)| *file == name)
                        .map(|(_, file)| ProcNode::ProcessFile(pid, *file))
                        .ok_or(Errno::ENOENT),
                }
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// What kind of file the node is (ENOENT once its process is gone).
    pub(crate) fn kind(self, processes: &dyn ProcessInfo) -> Result<FileType, Errno> {
        match self {
            ProcNode::Root => Ok(FileType::Directory),
            ProcNode::SelfLink => Ok(FileType::Symlink),
            ProcNode::Uptime | ProcNode::Meminfo | ProcNode::Mounts => Ok(FileType::Regular),
            ProcNode::Process(pid) => exists(processes, pid).map(|()| FileType::Directory),
            ProcNode::ProcessFile(pid, _) => exists(processes, pid).map(|()| FileType::Regular),
        }
    }

    /// `/proc/self`'s target for the calling process.
    pub(crate) fn link_target(self, caller: Pid) -> Result<Cow<'static, [u8]>, Errno> {
        match self {
            ProcNode::SelfLink => Ok(Cow::Owned(alloc::format!("{caller}").into_bytes())),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Its path below `/proc` (empty for the root), for `getcwd`.
    pub(crate) fn path(self) -> String {
        match self {
            ProcNode::Root => String::new(),
            ProcNode::Process(pid) => alloc::format!("/{pid}"),
            ProcNode::ProcessFile(pid, file) => {
                let name = PROCESS_FILES.iter().find(|(_, f)| *f == file).map_or(&b""[..], |(name, _)| name);
                alloc::format!("/{pid}/{}", String::from_utf8_lossy(name))
            }
            other => {
                let name = ROOT_FILES.iter().find(|(_, node)| *node == other).map_or(&b""[..], |(name, _)| name);
                alloc::format!("/{}", String::from_utf8_lossy(name))
            }
        }
    }

    /// A number for `st_ino`, unique within `/proc`.
    pub(crate) fn inode(self) -> u64 {
        let file_index = |file| PROCESS_FILES.iter().position(|(_, f)| *f == file).unwrap_or(0) as u64 + 1;
        match self {
            ProcNode::Root => 1,
            ProcNode::Uptime => 2,
            ProcNode::Meminfo => 3,
            ProcNode::Mounts => 4,
            ProcNode::SelfLink => 5,
            ProcNode::Process(pid) => (u64::from(pid) + 1) << 8,
            ProcNode::ProcessFile(pid, file) => ((u64::from(pid) + 1) << 8) | file_index(file),
        }
    }

    /// What `stat` says of the node: directories 0555, files 0444, the link 0777, all of
    /// size 0 (as Linux reports: the size is only known by reading); a process's nodes are
    /// owned by its user.
    pub(crate) fn metadata(self, processes: &dyn ProcessInfo, now_ns: u64) -> Result<Metadata, Errno> {
        let kind = self.kind(processes)?;
        let (uid, gid) = match self {
            ProcNode::Process(pid) | ProcNode::ProcessFile(pid, _) => {
                processes.status(pid).map(|status| (status.uid, status.gid)).ok_or(Errno::ENOENT)?
            }
            _ => (0, 0),
        };
        let (permissions, links) = match kind {
            FileType::Directory => (0o555, 2),
            FileType::Symlink => (0o777, 1),
            _ => (0o444, 1),
        };
        Ok(Metadata {
            inode: self.inode(),
            kind,
            permissions,
            links,
            uid,
            gid,
            size: 0,
            rdev: (0, 0),
            modified_ns: now_ns,
            changed_ns: now_ns,
        })
    }

    /// The entry of this directory that follows `after` (the first for `None`), `.` and
    /// `..` excluded: `/proc`'s files, then one directory per process by pid.
    pub(crate) fn entry_after(
        self,
        after: Option<&[u8]>,
        processes: &dyn ProcessInfo,
    ) -> Result<Option<ProcEntry>, Errno> {
        match self {
            ProcNode::Root => {
                let after_pid = after.and_then(parse_pid);
                if after_pid.is_none() {
                    let file = ROOT_FILES.iter().find(|(name, _)| after.is_none_or(|after| *name > after));
                    if let Some((name, node)) = file {
                        return Ok(Some(ProcEntry { name: name.to_vec(), node: *node }));
                    }
                }
                let next = processes.pids().into_iter().find(|&pid| after_pid.is_none_or(|after| pid > after));
                Ok(next
                    .map(|pid| ProcEntry { name: alloc::format!("{pid}").into_bytes(), node: ProcNode::Process(pid) }))
            }
            ProcNode::Process(pid) => {
                exists(processes, pid)?;
                let file = PROCESS_FILES.iter().find(|(name, _)| after.is_none_or(|after| *name > after));
                Ok(file.map(|(name, file)| ProcEntry { name: name.to_vec(), node: ProcNode::ProcessFile(pid, *file) }))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// A file's bytes now.
    pub(crate) fn contents(self, processes: &dyn ProcessInfo, context: &Context) -> Result<Vec<u8>, Errno> {
        let mut text = String::new();
        match self {
            ProcNode::Uptime => {
                let centiseconds = |ns: u64| ns / 10_000_000;
                let (up, idle) = (centiseconds(processes.uptime_ns()), centiseconds(processes.idle_ns()));
                let _ = writeln!(text, "{}.{:02} {}.{:02}", up / 100, up % 100, idle / 100, idle % 100);
            }
            ProcNode::Meminfo => meminfo(&mut text, processes.memory(), context.file_bytes),
            ProcNode::Mounts => text.push_str("rootfs / rootfs rw 0 0\nproc /proc proc rw,nosuid,nodev,noexec 0 0\n"),
            ProcNode::ProcessFile(pid, file) => {
                let status = processes.status(pid).ok_or(Errno::ENOENT)?;
                match file {
                    ProcessFile::Cmdline => return Ok(processes.command_line(pid)),
                    ProcessFile::Comm => {
                        let mut bytes = command_name(&status).to_vec();
                        bytes.push(b'\n');
                        return Ok(bytes);
                    }
                    ProcessFile::Stat => return Ok(stat_line(&status, context)),
                    ProcessFile::Status => status_lines(&mut text, &status),
                }
            }
            _ => return Err(Errno::EISDIR),
        }
        Ok(text.into_bytes())
    }
}

/// The name as Linux keeps it: at most 15 bytes.
fn command_name(status: &ProcessStatus) -> &[u8] {
    &status.name[..status.name.len().min(15)]
}

const fn ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / CLOCK_TICKS_PER_SECOND)
}

/// `/proc/meminfo`: Linux's label column (16 wide) and kB values right-aligned in 8.
fn meminfo(text: &mut String, memory: MemoryTotals, file_bytes: u64) {
    for (label, bytes) in [
        ("MemTotal:", memory.total_bytes),
        ("MemFree:", memory.free_bytes),
        ("MemAvailable:", memory.available_bytes),
        ("Buffers:", 0),
        ("Cached:", file_bytes),
        ("SwapCached:", 0),
        ("SwapTotal:", 0),
        ("SwapFree:", 0),
        ("Shmem:", file_bytes),
    ] {
        let _ = writeln!(text, "{label:<16}{:>8} kB", bytes / 1024);
    }
}

/// `/proc/<pid>/stat`: proc(5)'s 52 fields, in order. Fields this kernel has no notion of
/// (nice, real-time policy, code and stack addresses, which Linux hides from other
/// processes too) are 0; `priority` is 20 (nice 0), one thread, `exit_signal` SIGCHLD.
fn stat_line(status: &ProcessStatus, context: &Context) -> Vec<u8> {
    let mut line = alloc::format!("{} (", status.pid).into_bytes();
    line.extend_from_slice(command_name(status));
    let mut rest = String::new();
    let _ = write!(
        rest,
        ") {state} {ppid} {pgrp} {session} {tty} {tpgid} {flags} {minflt} 0 0 0 {utime} {stime} {cutime} {cstime} \
         20 0 1 0 {start} {vsize} {rss} {rsslim} 0 0 0 0 0 {signal} {blocked} {ignored} {caught} 0 0 0 {exit_signal} \
         0 0 0 0 0 0 0 0 0 0 0 0 0 {exit_code}",
        state = status.state.letter(),
        ppid = status.parent,
        pgrp = status.group,
        session = status.session,
        tty = context.terminal,
        tpgid = context.foreground,
        flags = 0,
        minflt = status.minor_faults,
        utime = ticks(status.user_ns),
        stime = ticks(status.system_ns),
        cutime = ticks(status.children_user_ns),
        cstime = ticks(status.children_system_ns),
        start = ticks(status.start_ns),
        vsize = status.virtual_bytes,
        rss = status.resident_pages,
        rsslim = u64::MAX,
        signal = status.pending,
        blocked = status.blocked,
        ignored = status.ignored,
        caught = status.caught,
        exit_signal = linux_raw_sys::general::SIGCHLD,
        exit_code = status.exit_code,
    );
    line.extend_from_slice(rest.as_bytes());
    line.push(b'\n');
    line
}

/// `/proc/<pid>/status`: the lines programs parse (`Name`, `State`, ids, `Uid`/`Gid`
/// real, effective, saved and file system ids, memory, threads, signal masks in hex).
fn status_lines(text: &mut String, status: &ProcessStatus) {
    let name = String::from_utf8_lossy(command_name(status));
    let (uid, gid) = (status.uid, status.gid);
    let _ = write!(
        text,
        "Name:\t{name}\nState:\t{} ({})\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n\
         Gid:\t{gid}\t{gid}\t{gid}\t{gid}\nVmSize:\t{:>8} kB\nVmRSS:\t{:>8} kB\nThreads:\t1\n\
         SigPnd:\t{:016x}\nSigBlk:\t{:016x}\nSigIgn:\t{:016x}\nSigCgt:\t{:016x}\n",
        status.state.letter(),
        status.state.name(),
        status.parent,
        status.virtual_bytes / 1024,
        status.resident_pages * 4,
        status.pending,
        status.blocked,
        status.ignored,
        status.caught,
        pid = status.pid,
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BUFFER, STRINGS};
    use super::*;
    use linux_raw_sys::general::*;

    fn read_file(world: &mut World, path: &[u8]) -> Vec<u8> {
        let fd = world.open(path, O_RDONLY);
        let mut bytes = Vec::new();
        loop {
            let chunk = world.read(fd, 7);
            if chunk.is_empty() {
                break;
            }
            bytes.extend(chunk);
        }
        world.ok(__NR_close, &[fd]);
        bytes
    }

    fn busy_shell(world: &mut World) {
        let (shell, _) = world.processes.table.iter_mut().find(|(status, _)| status.pid == 7).unwrap();
        shell.user_ns = 1_500_000_000;
        shell.system_ns = 250_000_000;
        shell.children_user_ns = 30_000_000;
        shell.children_system_ns = 10_000_000;
        shell.start_ns = 1_000_000_000;
        shell.virtual_bytes = 1 << 20;
        shell.resident_pages = 64;
        shell.minor_faults = 12;
        shell.blocked = 1 << 16;
        shell.caught = 1 << 1;
        shell.uid = 1000;
        shell.gid = 100;
    }

    #[test]
    fn process_stat_has_linux_fields_in_linux_order() {
        let mut world = World::new();
        busy_shell(&mut world);
        world.files.console_mut().set_foreground(7);
        let line = read_file(&mut world, b"/proc/7/stat");
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "7 (sh) S 1 7 7 1281 7 0 12 0 0 0 150 25 3 1 20 0 1 0 100 1048576 64 18446744073709551615 \
             0 0 0 0 0 0 65536 0 2 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        );
        // What busybox's procps_scan reads: the name between '(' and the last ')', then
        // fields from the state on.
        let text = String::from_utf8(line).unwrap();
        let close = text.rfind(')').unwrap();
        assert_eq!(&text[text.find('(').unwrap() + 1..close], "sh");
        let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
        assert_eq!(fields.len(), 50, "52 fields with pid and comm");
        assert_eq!((fields[0], fields[1], fields[2], fields[3], fields[4]), ("S", "1", "7", "7", "1281"));
        assert_eq!((fields[11], fields[12]), ("150", "25"), "utime and stime in clock ticks");
        assert_eq!((fields[19], fields[20], fields[21]), ("100", "1048576", "64"), "start, vsize, rss");
        assert_eq!(fields[35], "17", "exit_signal: SIGCHLD");
    }

    #[test]
    fn long_names_are_cut_and_zombies_show_their_state() {
        let mut world = World::new();
        world.processes.add(9, 7, 7, 7, "a-very-long-command-name", b"");
        world.processes.table.iter_mut().find(|(status, _)| status.pid == 9).unwrap().0.state = ProcessState::Zombie;
        let line = read_file(&mut world, b"/proc/9/stat");
        assert!(line.starts_with(b"9 (a-very-long-com) Z 7 "), "{}", String::from_utf8_lossy(&line));
        assert_eq!(read_file(&mut world, b"/proc/9/comm"), b"a-very-long-com\n");
        assert_eq!(read_file(&mut world, b"/proc/9/cmdline"), b"", "a zombie has no arguments");
    }

    #[test]
    fn system_files_have_linux_formats() {
        let mut world = World::new();
        assert_eq!(read_file(&mut world, b"/proc/uptime"), b"12.34 5.67\n");
        let meminfo = String::from_utf8(read_file(&mut world, b"/proc/meminfo")).unwrap();
        let lines: Vec<&str> = meminfo.lines().collect();
        assert_eq!(lines[0], "MemTotal:          65536 kB");
        assert_eq!(lines[1], "MemFree:           40960 kB");
        assert_eq!(lines[2], "MemAvailable:      49152 kB");
        assert!(lines.iter().any(|line| line.starts_with("SwapTotal:") && line.ends_with(" 0 kB")));
        let mounts = read_file(&mut world, b"/proc/mounts");
        assert!(mounts.starts_with(b"rootfs / rootfs rw 0 0\nproc /proc proc "));
    }

    #[test]
    fn process_files_describe_the_process() {
        let mut world = World::new();
        busy_shell(&mut world);
        assert_eq!(read_file(&mut world, b"/proc/7/cmdline"), b"sh\0-i\0");
        assert_eq!(read_file(&mut world, b"/proc/self/comm"), b"sh\n", "/proc/self is the caller");
        let status = String::from_utf8(read_file(&mut world, b"/proc/7/status")).unwrap();
        for expected in
            ["Name:\tsh\n", "State:\tS (sleeping)\n", "Pid:\t7\n", "PPid:\t1\n", "Uid:\t1000\t1000\t1000\t1000\n"]
        {
            assert!(status.contains(expected), "{expected:?} in {status}");
        }
        assert!(status.contains("VmSize:\t    1024 kB\n"));
        assert!(status.contains("SigBlk:\t0000000000010000\n"));
        let path = world.string(STRINGS, b"/proc/7");
        world.ok(__NR_stat, &[path, BUFFER]);
        let stat: crate::linux::layouts::Stat = crate::user_memory::read_value(&world.memory, BUFFER).unwrap();
        assert_eq!((stat.uid, stat.gid, stat.mode), (1000, 100, S_IFDIR | 0o555), "ps takes the user from here");
        let link = world.string(STRINGS, b"/proc/self");
        assert_eq!(world.ok(__NR_readlink, &[link, BUFFER, 16]), 1);
        assert_eq!(world.bytes(BUFFER, 1), b"7");
    }

    #[test]
    fn proc_refuses_what_it_cannot_do() {
        let mut world = World::new();
        for (path, flags, error) in [
            (&b"/proc/7/stat"[..], O_WRONLY, Errno::EACCES),
            (b"/proc/uptime", O_RDWR, Errno::EACCES),
            (b"/proc/99/stat", O_RDONLY, Errno::ENOENT),
            (b"/proc/07/stat", O_RDONLY, Errno::ENOENT),
            (b"/proc/0", O_RDONLY, Errno::ENOENT),
            (b"/proc/+7", O_RDONLY, Errno::ENOENT),
            (b"/proc/7/environ", O_RDONLY, Errno::ENOENT),
            (b"/proc/new", O_RDONLY | O_CREAT, Errno::EACCES),
            (b"/proc/uptime/x", O_RDONLY, Errno::ENOTDIR),
        ] {
            let path_address = world.string(STRINGS, path);
            let got = world.error(__NR_open, &[path_address, u64::from(flags), 0o644]);
            assert_eq!(got, error, "{}", String::from_utf8_lossy(path));
        }
        let fd = world.open(b"/proc/7/stat", O_RDONLY);
        world.processes.table.retain(|(status, _)| status.pid != 7);
        assert!(!world.read(fd, 4096).is_empty(), "an open file keeps the snapshot it was opened with");
        world.ok(__NR_fstat, &[fd, BUFFER]);
    }

    #[test]
    fn proc_lists_its_files_then_the_processes() {
        let mut world = World::new();
        let list = |world: &mut World, path: &[u8]| {
            let fd = world.open(path, O_RDONLY | O_DIRECTORY);
            let mut names = Vec::new();
            loop {
                let length = world.ok(__NR_getdents64, &[fd, BUFFER, 64]) as usize;
                if length == 0 {
                    break;
                }
                let bytes = world.bytes(BUFFER, length);
                let mut at = 0;
                while at < length {
                    let record_length = u16::from_le_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
                    let name = &bytes[at + 19..];
                    let name = &name[..name.iter().position(|&byte| byte == 0).unwrap()];
                    names.push((String::from_utf8(name.to_vec()).unwrap(), bytes[at + 18]));
                    at += record_length;
                }
            }
            names
        };
        let names = list(&mut world, b"/proc");
        let expected = [
            (".", DT_DIR),
            ("..", DT_DIR),
            ("meminfo", DT_REG),
            ("mounts", DT_REG),
            ("self", DT_LNK),
            ("uptime", DT_REG),
            ("1", DT_DIR),
            ("7", DT_DIR),
        ];
        assert_eq!(names, expected.map(|(name, kind)| (String::from(name), kind as u8)), "64-byte batches resume");
        let names = list(&mut world, b"/proc/self");
        let names: Vec<&str> = names.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, [".", "..", "cmdline", "comm", "stat", "status"]);
        let up = world.string(STRINGS, b"/proc/7/../..");
        world.ok(__NR_stat, &[up, BUFFER]);
        let root: crate::linux::layouts::Stat = crate::user_memory::read_value(&world.memory, BUFFER).unwrap();
        assert_eq!(root.device, 1, ".. from /proc climbs back into the file system");
    }
}
