//! A process's file descriptors: small integers naming shared open files, each with its
//! close-on-exec flag, and the calls that shuffle them (`dup`, `dup2`, `dup3`, `fcntl`'s
//! descriptor commands, `close`, and what `fork` and `execve` do to the table).
//!
//! The table is generic over what an open file is (`F`, shared between descriptors and
//! processes, e.g. `Rc<OpenFile>`), so its rules are tested without files. Descriptors are
//! numbered from 0 and a new one is the lowest free number, as POSIX requires; at most
//! [`LIMIT`] are open (EMFILE past it, Linux's default `RLIMIT_NOFILE`).

use alloc::vec::Vec;
use linux_raw_sys::general as uapi;

use crate::linux::Errno;

/// Most open descriptors per process.
pub const LIMIT: usize = 1024;

#[derive(Clone, Debug)]
struct Slot<F> {
    file: F,
    close_on_exec: bool,
}

/// A descriptor table.
#[derive(Clone, Debug)]
pub struct Descriptors<F> {
    slots: Vec<Option<Slot<F>>>,
}

impl<F> Default for Descriptors<F> {
    fn default() -> Self {
        Descriptors { slots: Vec::new() }
    }
}

/// An `fcntl` command on the table (file status flags, `F_GETFL`/`F_SETFL`, belong to the
/// open file, not the descriptor).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DescriptorCommand {
    /// `F_DUPFD`/`F_DUPFD_CLOEXEC`: duplicate to the lowest free number at least this.
    Duplicate {
        /// The lowest number acceptable.
        minimum: u64,
        /// Set close-on-exec on the copy.
        close_on_exec: bool,
    },
    /// `F_GETFD`.
    GetFlags,
    /// `F_SETFD`.
    SetFlags(u64),
}

impl DescriptorCommand {
    /// The command `fcntl(cmd, arg)` names, if it is one of the table's.
    pub fn new(command: u64, argument: u64) -> Option<DescriptorCommand> {
        match u32::try_from(command).ok()? {
            uapi::F_DUPFD => Some(DescriptorCommand::Duplicate { minimum: argument, close_on_exec: false }),
            uapi::F_DUPFD_CLOEXEC => Some(DescriptorCommand::Duplicate { minimum: argument, close_on_exec: true }),
            uapi::F_GETFD => Some(DescriptorCommand::GetFlags),
            uapi::F_SETFD => Some(DescriptorCommand::SetFlags(argument)),
            _ => None,
        }
    }
}

fn index(descriptor: u64) -> Result<usize, Errno> {
    usize::try_from(descriptor).ok().filter(|&index| index < LIMIT).ok_or(Errno::EBADF)
}

impl<F: Clone> Descriptors<F> {
    /// The open file `descriptor` names (EBADF if none).
    pub fn get(&self, descriptor: u64) -> Result<&F, Errno> {
        let index = index(descriptor)?;
        self.slots.get(index).and_then(Option::as_ref).map(|slot| &slot.file).ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free number at least `minimum`.
    pub fn insert_from(&mut self, minimum: usize, file: F, close_on_exec: bool) -> Result<u64, Errno> {
        if minimum >= LIMIT {
            return Err(Errno::EINVAL);
        }
        let free = (minimum..LIMIT).find(|&index| self.slots.get(index).is_none_or(Option::is_none));
        let index = free.ok_or(Errno::EMFILE)?;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(Slot { file, close_on_exec });
        Ok(index as u64)
    }

    /// Whether every number is taken (a new descriptor would be EMFILE), checked before a
    /// call does anything it could not take back (`open` creating a file).
    pub fn is_full(&self) -> bool {
        self.slots.len() == LIMIT && self.slots.iter().all(Option::is_some)
    }

    /// Installs `file` at the lowest free number (`open`, `pipe2`).
    pub fn insert(&mut self, file: F, close_on_exec: bool) -> Result<u64, Errno> {
        self.insert_from(0, file, close_on_exec)
    }

    /// `close`: removes `descriptor`, returning its open file for the caller to release.
    pub fn remove(&mut self, descriptor: u64) -> Result<F, Errno> {
        let index = index(descriptor)?;
        let slot = self.slots.get_mut(index).and_then(Option::take).ok_or(Errno::EBADF)?;
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        Ok(slot.file)
    }

    /// `dup`: a copy of `descriptor` at the lowest free number, without close-on-exec.
    pub fn duplicate(&mut self, descriptor: u64) -> Result<u64, Errno> {
        let file = self.get(descriptor)?.clone();
        self.insert(file, false)
    }

    /// `dup2` (`flags` 0, `same_allowed`) and `dup3` (`flags` `O_CLOEXEC` or 0, not
    /// `same_allowed`: EINVAL): makes `new` name what `old` names, closing what `new` named;
    /// that replaced file is returned for the caller to release.
    pub fn duplicate_to(
        &mut self,
        old: u64,
        new: u64,
        close_on_exec: bool,
        same_allowed: bool,
    ) -> Result<Option<F>, Errno> {
        let file = self.get(old)?.clone();
        let new_index = index(new)?;
        if old == new {
            return if same_allowed { Ok(None) } else { Err(Errno::EINVAL) };
        }
        if new_index >= self.slots.len() {
            self.slots.resize_with(new_index + 1, || None);
        }
        let replaced = self.slots[new_index].replace(Slot { file, close_on_exec });
        Ok(replaced.map(|slot| slot.file))
    }

    /// Puts `file` at `descriptor` (the kernel giving init its console), returning what
    /// was there for the caller to release.
    pub fn install(&mut self, descriptor: u64, file: F, close_on_exec: bool) -> Result<Option<F>, Errno> {
        let index = index(descriptor)?;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        Ok(self.slots[index].replace(Slot { file, close_on_exec }).map(|slot| slot.file))
    }

    /// The descriptor half of `fcntl`.
    pub fn command(&mut self, descriptor: u64, command: DescriptorCommand) -> Result<u64, Errno> {
        match command {
            DescriptorCommand::Duplicate { minimum, close_on_exec } => {
                let file = self.get(descriptor)?.clone();
                let minimum = usize::try_from(minimum).map_err(|_| Errno::EINVAL)?;
                self.insert_from(minimum, file, close_on_exec)
            }
            DescriptorCommand::GetFlags => {
                self.get(descriptor)?;
                let slot = self.slots[index(descriptor)?].as_ref().ok_or(Errno::EBADF)?;
                Ok(if slot.close_on_exec { u64::from(uapi::FD_CLOEXEC) } else { 0 })
            }
            DescriptorCommand::SetFlags(flags) => {
                let index = index(descriptor)?;
                let slot = self.slots.get_mut(index).and_then(Option::as_mut).ok_or(Errno::EBADF)?;
                slot.close_on_exec = flags & u64::from(uapi::FD_CLOEXEC) != 0;
                Ok(0)
            }
        }
    }

    /// `execve`: closes every close-on-exec descriptor, returning their files.
    pub fn close_on_exec(&mut self) -> Vec<F> {
        let mut closed = Vec::new();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|slot| slot.close_on_exec) {
                if let Some(slot) = slot.take() {
                    closed.push(slot.file);
                }
            }
        }
        closed
    }

    /// Every open file, with its descriptor (for `fork`'s reference counting and `exit`'s
    /// closing).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &F)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| slot.as_ref().map(|slot| (index as u64, &slot.file)))
    }

    /// Empties the table (`exit`), returning every file.
    pub fn take_all(&mut self) -> Vec<F> {
        core::mem::take(&mut self.slots).into_iter().flatten().map(|slot| slot.file).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_descriptors_take_the_lowest_free_number() {
        let mut table = Descriptors::default();
        assert_eq!(table.insert("stdin", false), Ok(0));
        assert_eq!(table.insert("stdout", false), Ok(1));
        assert_eq!(table.insert("stderr", false), Ok(2));
        assert_eq!(table.remove(1), Ok("stdout"));
        assert_eq!(table.insert("file", false), Ok(1));
        assert_eq!(table.get(1), Ok(&"file"));
        assert_eq!(table.get(7), Err(Errno::EBADF));
        assert_eq!(table.get(u64::MAX), Err(Errno::EBADF));
        assert_eq!(table.remove(7), Err(Errno::EBADF));
    }

    #[test]
    fn dup2_and_dup3_follow_their_rules() {
        let mut table = Descriptors::default();
        table.insert("a", false).unwrap();
        table.insert("b", false).unwrap();
        assert_eq!(table.duplicate_to(0, 1, false, true), Ok(Some("b")), "the replaced file comes back");
        assert_eq!(table.get(1), Ok(&"a"));
        assert_eq!(table.duplicate_to(0, 0, false, true), Ok(None), "dup2 to itself is a no-op");
        assert_eq!(table.duplicate_to(0, 0, false, false), Err(Errno::EINVAL), "dup3 to itself is EINVAL");
        assert_eq!(table.duplicate_to(5, 6, false, true), Err(Errno::EBADF));
        assert_eq!(table.duplicate_to(0, LIMIT as u64, false, true), Err(Errno::EBADF));
        assert_eq!(table.duplicate_to(0, 9, true, false), Ok(None));
        assert_eq!(table.command(9, DescriptorCommand::GetFlags), Ok(1));
        assert_eq!(table.duplicate(9), Ok(2), "dup clears close-on-exec");
        assert_eq!(table.command(2, DescriptorCommand::GetFlags), Ok(0));
    }

    #[test]
    fn fcntl_duplicates_above_a_minimum_and_sets_flags() {
        let mut table = Descriptors::default();
        table.insert("a", false).unwrap();
        let command = DescriptorCommand::new(u64::from(uapi::F_DUPFD_CLOEXEC), 10).unwrap();
        assert_eq!(table.command(0, command), Ok(10));
        assert_eq!(table.command(10, DescriptorCommand::GetFlags), Ok(u64::from(uapi::FD_CLOEXEC)));
        table.command(10, DescriptorCommand::SetFlags(0)).unwrap();
        assert_eq!(table.command(10, DescriptorCommand::GetFlags), Ok(0));
        let too_high = DescriptorCommand::Duplicate { minimum: LIMIT as u64, close_on_exec: false };
        assert_eq!(table.command(0, too_high), Err(Errno::EINVAL));
        assert_eq!(DescriptorCommand::new(u64::from(uapi::F_GETFL), 0), None, "status flags are the file's");
    }

    #[test]
    fn files_are_installed_at_a_number() {
        let mut table = Descriptors::default();
        assert_eq!(table.install(2, "console", false), Ok(None));
        assert_eq!(table.install(2, "other", true), Ok(Some("console")), "what was there comes back");
        assert_eq!(table.command(2, DescriptorCommand::GetFlags), Ok(1));
        assert_eq!(table.insert("next", false), Ok(0));
        assert_eq!(table.install(LIMIT as u64, "x", false), Err(Errno::EBADF));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = Descriptors::default();
        for expected in 0..LIMIT as u64 {
            assert_eq!(table.insert((), false), Ok(expected));
        }
        assert!(table.is_full());
        assert_eq!(table.insert((), false), Err(Errno::EMFILE));
        assert_eq!(table.duplicate(0), Err(Errno::EMFILE));
        table.remove(3).unwrap();
        assert!(!table.is_full());
    }

    #[test]
    fn exec_closes_close_on_exec_descriptors_only() {
        let mut table = Descriptors::default();
        table.insert("keep", false).unwrap();
        table.insert("drop", true).unwrap();
        assert_eq!(table.close_on_exec(), ["drop"]);
        assert_eq!(table.iter().collect::<Vec<_>>(), [(0, &"keep")]);
        assert_eq!(table.take_all(), ["keep"]);
        assert_eq!(table.iter().count(), 0);
    }
}
