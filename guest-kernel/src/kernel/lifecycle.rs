//! Processes begin, change program, and end: init's start, `fork`, `execve`, exit, and
//! the out-of-memory killer.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;

use guest_kernel_core::files::{Location, ProcessFiles};
use guest_kernel_core::fs::path::Follow;
use guest_kernel_core::fs::FileType;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::process_tree::{Pid, INIT};
use guest_kernel_core::signal::{ExitStatus, Signal, Signals};
use guest_kernel_core::user_memory::UserMemory;

use super::exec;
use super::information::Snapshot;
use super::process::{Process, Sleep, State, Usage};
use super::user_access::UserAccess;
use super::Kernel;
use crate::arch::machine::{ExtendedState, Machine, UserContext, UserRegisters};
use crate::console::kprintln;

/// How many `#!` interpreters may chain (Linux allows 4 too).
const INTERPRETER_DEPTH: usize = 4;
/// The longest `#!` line read.
const INTERPRETER_LINE_MAX: usize = 256;
/// The flags user code starts with: IF and the always-one bit.
const INITIAL_FLAGS: u64 = 0x202;

/// What `clone` asked for, checked.
#[derive(Copy, Clone, Debug, Default)]
pub struct CloneRequest {
    /// `CLONE_VFORK`: the parent sleeps until the child calls `execve` or exits.
    pub vfork: bool,
    /// The child's stack pointer (0: the parent's).
    pub stack: u64,
    /// `CLONE_SETTLS`: the child's FS base.
    pub tls: Option<u64>,
    /// `CLONE_PARENT_SETTID`: where the parent gets the child's pid.
    pub parent_tid: Option<u64>,
    /// `CLONE_CHILD_SETTID`: where the child gets its pid.
    pub child_tid: Option<u64>,
    /// `CLONE_CHILD_CLEARTID`: zeroed in the child at exit.
    pub clear_child_tid: Option<u64>,
}

/// The file name of a path (what `comm` shows).
fn file_name(path: &[u8]) -> Vec<u8> {
    let name = path.rsplit(|&byte| byte == b'/').next().unwrap_or(path);
    name[..name.len().min(15)].to_vec()
}

impl<M: Machine> Kernel<M> {
    /// Creates init (pid 1) with the console on descriptors 0–2 and runs `path` in it.
    pub(super) fn start_init(
        &mut self,
        path: &[u8],
        arguments: &[Vec<u8>],
        environment: &[Vec<u8>],
    ) -> Result<(), Errno> {
        let mut files = ProcessFiles::new(&mut self.files);
        self.files.install_console(&mut files)?;
        let process = Process {
            name: file_name(path),
            command_line: Vec::new(),
            context: Box::default(),
            space: None,
            files: Some(files),
            signals: Signals::default(),
            state: State::Ready,
            restart: None,
            clear_child_tid: 0,
            vfork_parent: None,
            usage: Usage { start_ns: self.machine.now_ns(), ..Usage::default() },
            signal_information: alloc::collections::BTreeMap::new(),
        };
        self.processes.insert(INIT, process);
        self.files.console_mut().set_foreground(INIT);
        if let Err(error) = self.execute(INIT, path, arguments, environment) {
            if let Some(mut process) = self.processes.remove(&INIT) {
                if let Some(files) = process.files.take() {
                    files.exit(&mut self.files);
                }
            }
            return Err(error);
        }
        self.counters.processes += 1;
        self.make_ready(INIT);
        Ok(())
    }

    /// Finds the program `path` names for `pid`: a regular file with an execute bit.
    fn find_program(&self, pid: Pid, path: &[u8]) -> Result<usize, Errno> {
        let process = self.processes.get(&pid).ok_or(Errno::ESRCH)?;
        let files = process.files.as_ref().ok_or(Errno::ESRCH)?;
        let snapshot = Snapshot::new(self);
        let location = self.files.resolve(files, &snapshot, pid, path, Follow::Yes)?;
        let Location::Inode(inode) = location else { return Err(Errno::EACCES) };
        let fs = self.files.fs();
        let metadata = fs.metadata(inode)?;
        if metadata.kind != FileType::Regular || metadata.permissions & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        Ok(inode)
    }

    /// `execve`: replaces `pid`'s program with `path`. On failure nothing of the process
    /// has changed.
    pub(super) fn execute(
        &mut self,
        pid: Pid,
        path: &[u8],
        arguments: &[Vec<u8>],
        environment: &[Vec<u8>],
    ) -> Result<(), Errno> {
        let mut path = path.to_vec();
        let mut arguments = arguments.to_vec();
        let mut inode = self.find_program(pid, &path)?;
        // `#!interpreter [argument]`: run the interpreter with the script's path.
        for depth in 0..=INTERPRETER_DEPTH {
            let contents = self.files.fs().contents(inode)?;
            if !contents.starts_with(b"#!") {
                break;
            }
            if depth == INTERPRETER_DEPTH {
                return Err(Errno::ELOOP);
            }
            let line = &contents[2..contents.len().min(INTERPRETER_LINE_MAX)];
            let line = &line[..line.iter().position(|&byte| byte == b'\n').ok_or(Errno::ENOEXEC)?];
            let mut words = line.split(|&byte| byte == b' ' || byte == b'\t').filter(|word| !word.is_empty());
            let interpreter = words.next().ok_or(Errno::ENOEXEC)?.to_vec();
            let rest: Vec<u8> = words.collect::<Vec<_>>().join(&b' ');
            let mut new_arguments = alloc::vec![interpreter.clone()];
            if !rest.is_empty() {
                new_arguments.push(rest);
            }
            new_arguments.push(path.clone());
            new_arguments.extend(arguments.iter().skip(1).cloned());
            arguments = new_arguments;
            path = interpreter;
            inode = self.find_program(pid, &path)?;
        }
        let mut random = [0u8; 16];
        self.random.stir(self.machine.now_ns());
        self.random.fill(&mut random);
        let quota = self.memory_bytes.saturating_mul(4);
        let loaded = {
            let file = self.files.fs().contents(inode)?;
            let vdso = self.vdso.as_ref();
            exec::load(self.machine, &mut self.frames, vdso, file, &path, &arguments, environment, random, quota)?
        };
        // The point of no return.
        let machine = self.machine;
        let process = self.processes.get_mut(&pid).ok_or(Errno::ESRCH)?;
        if let Some(old) = process.space.replace(loaded.space) {
            old.destroy(machine, &mut self.frames);
        }
        if let Some(files) = process.files.as_mut() {
            files.exec(&mut self.files);
        }
        process.signals.exec();
        process.name = file_name(&path);
        process.command_line = arguments.iter().flat_map(|argument| argument.iter().copied().chain([0])).collect();
        // A new context: the registers' extended state is the old program's, and the new
        // one starts from the initial state instead.
        *process.context = UserContext::new(
            UserRegisters {
                rip: loaded.entry,
                rsp: loaded.stack_pointer,
                rflags: INITIAL_FLAGS,
                ..UserRegisters::default()
            },
            ExtendedState::initial(),
        );
        process.clear_child_tid = 0;
        if let Some(parent) = process.vfork_parent.take() {
            self.end_vfork(parent, pid);
        }
        Ok(())
    }

    /// A `vfork` child let its parent go.
    fn end_vfork(&mut self, parent: Pid, child: Pid) {
        if self.processes.get(&parent).is_some_and(|process| process.state == State::Blocked(Sleep::Vfork(child))) {
            self.make_ready(parent);
        }
    }

    /// `fork`/`clone`: a copy of `parent` with its own address space (copy-on-write).
    pub(super) fn fork(&mut self, parent: Pid, request: &CloneRequest) -> Result<Pid, Errno> {
        let child = self.tree.spawn(parent)?;
        let machine = self.machine;
        let result = (|| {
            let source = self.processes.get_mut(&parent).ok_or(Errno::ESRCH)?;
            let space = source.space.as_mut().ok_or(Errno::ESRCH)?;
            let child_space = space.fork(machine, &mut self.frames).map_err(|error| {
                if error.code == -i64::from(Errno::ENOSPC.number()) {
                    Errno::EAGAIN
                } else {
                    Errno::ENOMEM
                }
            })?;
            let files = source.files.as_ref().map(|files| files.fork(&mut self.files));
            // The child starts from the parent's vector registers as they are now, which may
            // be newer than its saved copy.
            machine.save_extended(&mut source.context);
            let mut context = source.context.clone();
            context.registers.rax = 0;
            if request.stack != 0 {
                context.registers.rsp = request.stack;
            }
            if let Some(tls) = request.tls {
                context.registers.fs_base = tls;
            }
            let process = Process {
                name: source.name.clone(),
                command_line: source.command_line.clone(),
                context,
                space: Some(child_space),
                files,
                signals: source.signals.forked(),
                state: State::Ready,
                restart: None,
                clear_child_tid: request.clear_child_tid.unwrap_or(0),
                vfork_parent: request.vfork.then_some(parent),
                usage: Usage { start_ns: machine.now_ns(), ..Usage::default() },
                signal_information: alloc::collections::BTreeMap::new(),
            };
            Ok(process)
        })();
        let process = match result {
            Ok(process) => process,
            Err(error) => {
                // Undo the tree's entry: the child never ran.
                let _ = self.tree.exit(child, ExitStatus::Exited(0));
                let _ = self.tree.wait(parent, guest_kernel_core::process_tree::Selector::Pid(child));
                return Err(error);
            }
        };
        self.processes.insert(child, process);
        self.counters.processes += 1;
        let pid_bytes = child.to_le_bytes();
        if let Some(address) = request.child_tid {
            let _ = self.with_memory(child, |memory| memory.write(address, &pid_bytes));
        }
        if let Some(address) = request.parent_tid {
            let _ = self.with_memory(parent, |memory| memory.write(address, &pid_bytes));
        }
        self.make_ready(child);
        Ok(child)
    }

    /// Runs `work` with `pid`'s memory.
    pub(super) fn with_memory<T>(
        &mut self,
        pid: Pid,
        work: impl FnOnce(&mut UserAccess<'_, M>) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let process = self.processes.get_mut(&pid).ok_or(Errno::ESRCH)?;
        let space = process.space.as_mut().ok_or(Errno::ESRCH)?;
        let mut memory = UserAccess { machine: self.machine, space, frames: &mut self.frames };
        work(&mut memory)
    }

    /// Ends `pid` with `status`: its memory and files go, its parent is told, and it stays
    /// a zombie until waited for. init's end is the kernel's.
    pub(super) fn exit_process(&mut self, pid: Pid, status: ExitStatus) {
        let machine = self.machine;
        let Some(process) = self.processes.get_mut(&pid) else { return };
        if matches!(process.state, State::Zombie(_)) {
            return;
        }
        if process.clear_child_tid != 0 {
            let address = process.clear_child_tid;
            let _ = self.with_memory(pid, |memory| memory.write(address, &0u32.to_le_bytes()));
        }
        let Some(process) = self.processes.get_mut(&pid) else { return };
        process.state = State::Zombie(status);
        process.restart = None;
        let files = process.files.take();
        let space = process.space.take();
        let vfork_parent = process.vfork_parent.take();
        if let Some(files) = files {
            files.exit(&mut self.files);
        }
        if let Some(space) = space {
            space.destroy(machine, &mut self.frames);
        }
        self.ready.retain(|&ready| ready != pid);
        let Ok((parent, zombies_for_init)) = self.tree.exit(pid, status) else { return };
        if pid == INIT {
            self.finished = Some(status.shell_status());
            return;
        }
        if let Some(vfork_parent) = vfork_parent {
            self.end_vfork(vfork_parent, pid);
        }
        let (code, child_status) = match status {
            ExitStatus::Exited(code) => (super::signals::CLD_EXITED, i32::from(code)),
            ExitStatus::Killed { signal, core_dumped: false } => (super::signals::CLD_KILLED, signal.number() as i32),
            ExitStatus::Killed { signal, core_dumped: true } => (super::signals::CLD_DUMPED, signal.number() as i32),
        };
        let information = super::signal_frame::Information { code, pid, address: 0, status: child_status };
        self.send_signal_with(parent, Signal::CHILD, information);
        self.wake_waiting_parent(parent);
        if zombies_for_init {
            self.wake_waiting_parent(INIT);
        }
        self.wake_file_waiters();
    }

    fn wake_waiting_parent(&mut self, parent: Pid) {
        if self.processes.get(&parent).is_some_and(|process| process.state == State::Blocked(Sleep::Child)) {
            self.make_ready(parent);
        }
    }

    /// Out of frames: ends the process holding the most memory (init last), with a line
    /// on the console. Returns whether one was ended.
    pub(super) fn kill_for_memory(&mut self) -> bool {
        let victim = self
            .processes
            .iter()
            .filter(|(_, process)| process.space.is_some())
            .max_by_key(|(&pid, process)| {
                (pid != INIT, process.space.as_ref().map_or(0, |space| space.resident_pages()))
            })
            .map(|(&pid, process)| (pid, process.space.as_ref().map_or(0, |space| space.resident_pages())));
        let Some((pid, pages)) = victim else { return false };
        let name =
            self.processes.get(&pid).map(|process| alloc::string::String::from_utf8_lossy(&process.name).into_owned());
        kprintln!(
            "guest-kernel: out of memory: killed process {pid} ({}), {} KiB",
            name.unwrap_or_default(),
            pages * 4
        );
        self.exit_process(pid, ExitStatus::Killed { signal: Signal::KILL, core_dumped: false });
        true
    }
}
