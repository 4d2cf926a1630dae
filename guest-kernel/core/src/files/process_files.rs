//! A process's own file state: its descriptor table, working directory and file-creation
//! mask, and what `fork`, `execve` and `exit` do to them.
//!
//! Open files and the working directory are references the file side counts (an unlinked
//! file lives while open; a pipe's end closes with its last description), so this state
//! only changes through the methods here, which take [`Files`] to keep the counts right.
//! The kernel must end each one with [`ProcessFiles::exit`]; dropping it instead would
//! leave its pipes open.

use super::namespace::Location;
use super::open_file::FileRef;
use super::world::Files;
use crate::descriptors::Descriptors;
use crate::fs::tree::ROOT;
use crate::linux::Errno;

/// A process's files.
pub struct ProcessFiles {
    descriptors: Descriptors<FileRef>,
    cwd: Location,
    umask: u32,
}

/// The file-creation mask a first process starts with (Linux's default).
pub const DEFAULT_UMASK: u32 = 0o022;

impl ProcessFiles {
    /// The files of the first process: no descriptors, the root as working directory.
    pub fn new(files: &mut Files) -> ProcessFiles {
        let cwd = Location::Inode(ROOT);
        // The root inode cannot be freed, so holding it cannot fail.
        let _ = files.hold(cwd);
        ProcessFiles { descriptors: Descriptors::default(), cwd, umask: DEFAULT_UMASK }
    }

    /// `fork`: the child shares every open file description and the working directory.
    pub fn fork(&self, files: &mut Files) -> ProcessFiles {
        let _ = files.hold(self.cwd);
        ProcessFiles { descriptors: self.descriptors.clone(), cwd: self.cwd, umask: self.umask }
    }

    /// `execve` (once it can no longer fail): close-on-exec descriptors are closed.
    pub fn exec(&mut self, files: &mut Files) {
        for file in self.descriptors.close_on_exec() {
            files.release(file);
        }
    }

    /// `exit`: every descriptor is closed and the working directory let go.
    pub fn exit(mut self, files: &mut Files) {
        for file in self.descriptors.take_all() {
            files.release(file);
        }
        files.release_location(self.cwd);
    }

    /// The descriptor table.
    pub const fn descriptors(&self) -> &Descriptors<FileRef> {
        &self.descriptors
    }

    pub(crate) fn descriptors_mut(&mut self) -> &mut Descriptors<FileRef> {
        &mut self.descriptors
    }

    /// The working directory.
    pub const fn cwd(&self) -> Location {
        self.cwd
    }

    /// Changes the working directory.
    pub(crate) fn set_cwd(&mut self, files: &mut Files, cwd: Location) -> Result<(), Errno> {
        files.hold(cwd)?;
        files.release_location(core::mem::replace(&mut self.cwd, cwd));
        Ok(())
    }

    /// The file-creation mask.
    pub const fn umask(&self) -> u32 {
        self.umask
    }

    pub(crate) fn set_umask(&mut self, umask: u32) -> u32 {
        core::mem::replace(&mut self.umask, umask)
    }
}
