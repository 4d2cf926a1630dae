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
use super::socket_end::{SocketEnd, SocketKind};
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
    #[inline]
    pub fn take_events(&mut self) -> Vec<Event> {
        // Asked after every system call, and almost always empty: an empty set is answered
        // without building (and tearing down) a set iterator.
        if self.events.is_empty() {
            return Vec::new();
        }
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

    /// A new socket pair: two pipe buffers, one each way (ENFILE if the bound has no room
    /// for both).
    pub(crate) fn new_socket_pair(&mut self, kind: SocketKind) -> Result<(SocketEnd, SocketEnd), Errno> {
        let there = self.new_pipe()?;
        let back = match self.new_pipe() {
            Ok(back) => back,
            Err(error) => {
                self.drop_pipe(there);
                return Err(error);
            }
        };
        let first = SocketEnd { kind, receive: back.clone(), send: there.clone() };
        Ok((first, SocketEnd { kind, receive: there, send: back }))
    }

    /// `shutdown`: `end` stops receiving (its peer's writes fail, its own reads end once
    /// its buffer is empty) and/or sending (its peer reads to end of file). Whoever sleeps
    /// on either buffer wakes to see it.
    pub(crate) fn shut_down(&mut self, end: &SocketEnd, receiving: bool, sending: bool) {
        for (stop, buffer, reader) in [(receiving, &end.receive, true), (sending, &end.send, false)] {
            if !stop {
                continue;
            }
            let mut state = buffer.borrow_mut();
            let mut changed = false;
            if reader && state.pipe.has_readers() {
                state.pipe.close_reader();
                changed = true;
            }
            if state.pipe.has_writers() {
                state.pipe.close_writer();
                changed = true;
            }
            if changed {
                let id = state.id;
                drop(state);
                self.raise(Event::PipeReadable(id));
                self.raise(Event::PipeWritable(id));
            }
        }
    }

    /// Pipes open now (each socket pair counts two: a buffer each way).
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
            Node::Socket(end) => {
                self.shut_down(&end, true, true);
                self.drop_pipe(end.receive);
                self.drop_pipe(end.send);
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

#[cfg(test)]
mod tests {
    use super::super::testing::{Screen, World, BUFFER, STRINGS};
    use super::*;
    use crate::fs::tree::NewNode;
    use linux_raw_sys::general::*;

    #[test]
    fn the_kernel_provides_dev_and_proc() {
        let world = World::new();
        let fs = world.files.fs();
        let dev = fs.lookup(ROOT, b"dev").unwrap();
        for (name, number) in [(&b"null"[..], Device::NULL), (b"zero", Device::ZERO), (b"console", Device::CONSOLE)] {
            let metadata = fs.metadata(fs.lookup(dev, name).unwrap()).unwrap();
            assert_eq!((metadata.kind, metadata.rdev), (FileType::CharDevice, number));
        }
        assert_eq!(fs.kind(fs.lookup(ROOT, b"proc").unwrap()), Ok(FileType::Directory));

        let mut fs = FileSystem::new(1 << 16);
        let dev = fs.create(ROOT, b"dev", NewNode::Directory, 0o700).unwrap();
        fs.create(dev, b"null", NewNode::File, 0o600).unwrap();
        let files = Files::new(fs, Box::new(Screen::default()), 1).unwrap();
        let null = files.fs().lookup(files.fs().lookup(ROOT, b"dev").unwrap(), b"null").unwrap();
        assert_eq!(files.fs().kind(null), Ok(FileType::Regular), "what the archive has is kept");

        let mut fs = FileSystem::new(1 << 16);
        fs.create(ROOT, b"proc", NewNode::File, 0o600).unwrap();
        assert_eq!(Files::new(fs, Box::new(Screen::default()), 1).err(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn init_gets_the_console_as_its_standard_files() {
        let mut world = World::new();
        world.files.install_console(&mut world.process).unwrap();
        assert_eq!(world.write(1, b"out\n"), 4);
        assert_eq!(world.write(2, b"err\n"), 4);
        assert_eq!(world.screen(), b"out\r\nerr\r\n");
        world.files.console_input(b"in\n");
        assert_eq!(world.read(0, 10), b"in\n");
        let flags = world.ok(__NR_fcntl, &[0, u64::from(F_GETFL)]) as u32;
        assert_eq!(flags & O_ACCMODE, O_RDWR);
        world.ok(__NR_fcntl, &[2, u64::from(F_SETFL), u64::from(O_NONBLOCK)]);
        assert_eq!(world.error(__NR_read, &[0, BUFFER, 10]), Errno::EAGAIN, "one description shared by 0, 1 and 2");
        assert_eq!(world.open(b"/etc/motd", O_RDONLY), 3);
    }

    #[test]
    fn an_unlinked_file_lives_until_its_last_close() {
        let mut world = World::new();
        let fd = world.open(b"/tmp/scratch", O_CREAT | O_RDWR);
        world.write(fd, &[b'z'; 3000]);
        let used = world.files.fs().usage().0;
        let copy = world.ok(__NR_dup, &[fd]);
        let path = world.string(STRINGS, b"/tmp/scratch");
        world.ok(__NR_unlink, &[path]);
        world.ok(__NR_lseek, &[fd, 0, 0]);
        assert_eq!(world.read(fd, 5), b"zzzzz", "still readable");
        world.ok(__NR_close, &[fd]);
        assert_eq!(world.files.fs().usage().0, used - 7, "a dup keeps it (only the name's 7 bytes are gone)");
        world.ok(__NR_close, &[copy]);
        assert!(world.files.fs().usage().0 < used - 3000, "freed with the last description");
    }

    #[test]
    fn pipe_ends_close_with_the_last_process_holding_them() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        let child = world.process.fork(&mut world.files);
        world.ok(__NR_close, &[write_end]);
        match world.call(__NR_read, &[read_end, BUFFER, 10]) {
            Ok(super::super::Outcome::Block(_)) => {}
            other => panic!("the child still holds a writer: {other:?}"),
        }
        child.exit(&mut world.files);
        assert_eq!(world.files.take_events(), [Event::PipeReadable(1)]);
        assert_eq!(world.read(read_end, 10), b"", "end of file once every writer is gone");
        let process = core::mem::replace(&mut world.process, ProcessFiles::new(&mut world.files));
        process.exit(&mut world.files);
        assert_eq!(world.files.pipes(), 0, "the pipe is gone with its last end");
    }

    #[test]
    fn execve_resolves_as_the_process_would() {
        let mut world = World::new();
        let bin = world.string(STRINGS, b"/bin");
        world.ok(__NR_chdir, &[bin]);
        let location = world.files.resolve(&world.process, &world.processes, 7, b"sh", Follow::Yes).unwrap();
        let Location::Inode(id) = location else { panic!("{location:?}") };
        assert_eq!(world.files.fs().contents(id).unwrap().len(), 5000);
        assert_eq!(
            world.files.resolve(&world.process, &world.processes, 7, b"/proc/self", Follow::Yes),
            Ok(Location::Proc(super::super::ProcNode::Process(7)))
        );
    }

    #[test]
    fn device_numbers_are_encoded_as_linux_does() {
        assert_eq!(encode_device((1, 3)), 0x103);
        assert_eq!(encode_device((5, 1)), 0x501);
        assert_eq!(encode_device((8, 0x12345)), 0x1230_0845, "the minor's high bits above the major");
    }
}
