//! [`Files`]: everything of the file side that is not one process's: the file system,
//! `/proc`'s mount point, the console, the pipes' numbering and bound, and the events
//! that wake sleeping calls.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::console::{Console, ConsoleOutput, ConsoleSignal};
use super::namespace::{Location, View};
use super::open_file::{Access, Device, FileRef, Node, OpenFile, PipeState, SharedPipe};
use super::outcome::{Event, PipeId};
use super::proc::{Context, ProcessInfo};
use super::process_files::ProcessFiles;
use crate::fs::path::{resolve, Follow};
use crate::fs::tree::{FileSystem, InodeId, NewNode, ROOT};
use crate::fs::FileType;
use crate::linux::Errno;
use crate::pipe::Pipe;
use crate::process_tree::Pid;

/// The file side of the kernel.
pub struct Files {
    pub(crate) fs: FileSystem,
    pub(crate) mount: InodeId,
    pub(crate) console: Console,
    next_pipe: PipeId,
    pipes: usize,
    pipe_limit: usize,
    events: BTreeSet<Event>,
    now_ns: u64,
}

/// Finds or makes directory `name` in `parent`.
fn ensure_directory(fs: &mut FileSystem, parent: InodeId, name: &[u8], permissions: u32) -> Result<InodeId, Errno> {
    match fs.lookup(parent, name) {
        Ok(id) if fs.kind(id)? == FileType::Directory => Ok(id),
        Ok(_) => Err(Errno::ENOTDIR),
        Err(Errno::ENOENT) => fs.create(parent, name, NewNode::Directory, permissions),
        Err(error) => Err(error),
    }
}

impl Files {
    /// The file side over `fs` (the unpacked initramfs), writing console output to
    /// `output`, allowing `pipe_limit` pipes at once (ENFILE past it: each may hold
    /// [`crate::pipe::CAPACITY`] bytes of kernel memory). Makes what the kernel provides
    /// if the archive lacks it: `/dev` with `null`, `zero`, `console` and `tty`, and the
    /// `/proc` directory that `/proc` is mounted on. ENOTDIR if the archive has a
    /// non-directory where `/dev` or `/proc` must be.
    pub fn new(mut fs: FileSystem, output: Box<dyn ConsoleOutput>, pipe_limit: usize) -> Result<Files, Errno> {
        let dev = ensure_directory(&mut fs, ROOT, b"dev", 0o755)?;
        for (name, number, permissions) in [
            (&b"null"[..], Device::NULL, 0o666),
            (b"zero", Device::ZERO, 0o666),
            (b"console", Device::CONSOLE, 0o600),
            (b"tty", Device::TTY, 0o666),
        ] {
            match fs.lookup(dev, name) {
                Err(Errno::ENOENT) => {
                    fs.create(dev, name, NewNode::Special(FileType::CharDevice, number), permissions)?;
                }
                Err(error) => return Err(error),
                Ok(_) => {}
            }
        }
        let mount = ensure_directory(&mut fs, ROOT, b"proc", 0o555)?;
        Ok(Files {
            fs,
            mount,
            console: Console::new(output),
            next_pipe: 1,
            pipes: 0,
            pipe_limit,
            events: BTreeSet::new(),
            now_ns: 0,
        })
    }

    /// The file system (`execve` reads programs from it).
    pub const fn fs(&self) -> &FileSystem {
        &self.fs
    }

    /// The file system, to change.
    pub fn fs_mut(&mut self) -> &mut FileSystem {
        &mut self.fs
    }

    /// Sets the wall-clock time (ns since 1970) that changes are stamped with; the kernel
    /// calls it before each system call (or at each timer tick).
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        self.fs.set_now(now_ns);
    }

    pub(crate) const fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The console.
    pub const fn console(&self) -> &Console {
        &self.console
    }

    /// The console, to change (window size, foreground group).
    pub fn console_mut(&mut self) -> &mut Console {
        &mut self.console
    }

    /// Console input arrived: the line discipline edits and echoes it. Returns the signals
    /// typed, each for every process of its group; readers are woken through
    /// [`Files::take_events`].
    pub fn console_input(&mut self, bytes: &[u8]) -> Vec<ConsoleSignal> {
        let (signals, readable) = self.console.input(bytes);
        if readable {
            self.raise(Event::ConsoleReadable);
        }
        signals
    }

    /// The events since the last call: the kernel wakes every process sleeping on one of
    /// them (the woken calls run again and sleep again if they still cannot complete).
    pub fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events).into_iter().collect()
    }

    pub(crate) fn raise(&mut self, event: Event) {
        self.events.insert(event);
    }

    /// Resolves `path` as `process` (pid `caller`) would (`execve` uses it).
    pub fn resolve(
        &self,
        process: &ProcessFiles,
        processes: &dyn ProcessInfo,
        caller: Pid,
        path: &[u8],
        follow: Follow,
    ) -> Result<Location, Errno> {
        resolve(&self.view(processes, caller), process.cwd(), path, follow)
    }

    pub(crate) fn view<'a>(&'a self, processes: &'a dyn ProcessInfo, caller: Pid) -> View<'a> {
        View { fs: &self.fs, mount: self.mount, processes, caller }
    }

    pub(crate) fn proc_context(&self) -> Context {
        Context {
            terminal: encode_device(Device::CONSOLE),
            foreground: self.console.foreground(),
            file_bytes: self.fs.usage().0,
        }
    }

    /// Gives init its standard input, output and error: descriptors 0, 1 and 2 on one
    /// open description of the console, as Linux does before running init.
    pub fn install_console(&mut self, process: &mut ProcessFiles) -> Result<(), Errno> {
        let dev = self.fs.lookup(ROOT, b"dev")?;
        let inode = self.fs.lookup(dev, b"console")?;
        self.fs.hold(inode)?;
        let console = super::open_file::share(OpenFile::new(
            Node::Device { inode, device: Device::Console },
            Access::ReadWrite,
            0,
        ));
        for descriptor in 0..3 {
            if let Ok(Some(replaced)) = process.descriptors_mut().install(descriptor, console.clone(), false) {
                self.release(replaced);
            }
        }
        self.release(console);
        Ok(())
    }

    /// A new pipe (ENFILE at the bound).
    pub(crate) fn new_pipe(&mut self) -> Result<SharedPipe, Errno> {
        if self.pipes >= self.pipe_limit {
            return Err(Errno::ENFILE);
        }
        self.pipes += 1;
        let id = self.next_pipe;
        self.next_pipe += 1;
        Ok(Rc::new(RefCell::new(PipeState { id, pipe: Pipe::new() })))
    }

    /// Pipes open now.
    pub const fn pipes(&self) -> usize {
        self.pipes
    }

    /// A location is referred to once more (a working directory, an open directory).
    pub(crate) fn hold(&mut self, location: Location) -> Result<(), Errno> {
        match location {
            Location::Inode(id) => self.fs.hold(id),
            Location::Proc(_) => Ok(()),
        }
    }

    /// A reference to a location is gone.
    pub(crate) fn release_location(&mut self, location: Location) {
        if let Location::Inode(id) = location {
            self.fs.release(id);
        }
    }

    /// Gives back a reference to an open file (from `close`, `dup2` replacing, `execve`,
    /// `exit`). The last reference closes it: its inode may be freed, a pipe end counts
    /// one fewer (waking the other end).
    pub fn release(&mut self, file: FileRef) {
        let Some(cell) = Rc::into_inner(file) else { return };
        match cell.into_inner().node {
            Node::Regular { inode, .. } | Node::Device { inode, .. } => self.fs.release(inode),
            Node::Directory { location, .. } | Node::Path(location) => self.release_location(location),
            Node::Generated { .. } => {}
            Node::PipeReader(pipe) => {
                let (id, last) = {
                    let mut state = pipe.borrow_mut();
                    (state.id, state.pipe.close_reader())
                };
                if last {
                    self.raise(Event::PipeWritable(id));
                }
                self.drop_pipe(pipe);
            }
            Node::PipeWriter(pipe) => {
                let (id, last) = {
                    let mut state = pipe.borrow_mut();
                    (state.id, state.pipe.close_writer())
                };
                if last {
                    self.raise(Event::PipeReadable(id));
                }
                self.drop_pipe(pipe);
            }
        }
    }

    fn drop_pipe(&mut self, pipe: SharedPipe) {
        if Rc::into_inner(pipe).is_some() {
            self.pipes -= 1;
        }
    }
}

/// A device number as `stat` and `/proc/<pid>/stat` encode it (Linux's
/// `new_encode_dev`: minor's low byte, major, then minor's high bits).
pub(crate) const fn encode_device((major, minor): (u32, u32)) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}
