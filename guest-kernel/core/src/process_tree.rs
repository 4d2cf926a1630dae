//! Who is whose parent, and what `wait4` finds: the process tree with process groups and
//! sessions, zombies, and orphans given to init.
//!
//! A process that exits stays as a zombie holding its status until its parent waits for
//! it; its living children go to init (pid 1), which reaps them. `wait4` selects children
//! by pid (`> 0`), any (`-1`), the caller's group (`0`) or a given group (`< -1`). The
//! number of processes is bounded (EAGAIN past it), so a fork bomb cannot exhaust the
//! kernel. The tree is policy only: the process layer keeps each process's memory, files
//! and registers by pid.

use alloc::collections::{BTreeMap, BTreeSet};

use crate::linux::Errno;
use crate::signal::ExitStatus;

/// A process id.
pub type Pid = u32;

/// Init's pid.
pub const INIT: Pid = 1;

#[derive(Clone, Debug)]
struct Node {
    parent: Pid,
    group: Pid,
    session: Pid,
    zombie: Option<ExitStatus>,
    children: BTreeSet<Pid>,
}

/// Which children `wait4` waits for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// This child.
    Pid(Pid),
    /// Any child.
    Any,
    /// Any child in this group.
    Group(Pid),
}

impl Selector {
    /// The selector `wait4`'s `pid` argument means for `caller`.
    pub fn new(tree: &ProcessTree, caller: Pid, pid: i64) -> Selector {
        match pid {
            -1 => Selector::Any,
            0 => Selector::Group(tree.group(caller).unwrap_or(caller)),
            pid if pid < -1 => Selector::Group(pid.unsigned_abs() as Pid),
            pid => Selector::Pid(pid as Pid),
        }
    }
}

/// What `wait4` found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    /// A zombie child, now reaped.
    Reaped(Pid, ExitStatus),
    /// Matching children exist but none has ended: block, or return 0 with `WNOHANG`.
    NotYet,
}

/// The process tree.
#[derive(Clone, Debug)]
pub struct ProcessTree {
    nodes: BTreeMap<Pid, Node>,
    next: Pid,
    limit: usize,
}

impl ProcessTree {
    /// A tree holding init alone (its own group and session), allowing `limit` processes.
    pub fn new(limit: usize) -> ProcessTree {
        let init = Node { parent: 0, group: INIT, session: INIT, zombie: None, children: BTreeSet::new() };
        ProcessTree { nodes: BTreeMap::from([(INIT, init)]), next: INIT + 1, limit }
    }

    /// Processes alive or zombie.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty: never, as init has no parent to reap it.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `pid` exists and has not exited.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.nodes.get(&pid).is_some_and(|node| node.zombie.is_none())
    }

    /// `getppid`.
    pub fn parent(&self, pid: Pid) -> Option<Pid> {
        self.nodes.get(&pid).map(|node| node.parent)
    }

    /// `getpgid`.
    pub fn group(&self, pid: Pid) -> Option<Pid> {
        self.nodes.get(&pid).map(|node| node.group)
    }

    /// `getsid`.
    pub fn session(&self, pid: Pid) -> Option<Pid> {
        self.nodes.get(&pid).map(|node| node.session)
    }

    /// Living processes in `group` (for `kill(-group)` and the terminal's Ctrl-C).
    pub fn members(&self, group: Pid) -> impl Iterator<Item = Pid> + '_ {
        self.nodes.iter().filter(move |(_, node)| node.group == group && node.zombie.is_none()).map(|(pid, _)| *pid)
    }

    /// `fork`: a child of `parent` in its group and session. EAGAIN at the limit.
    pub fn spawn(&mut self, parent: Pid) -> Result<Pid, Errno> {
        if self.nodes.len() >= self.limit {
            return Err(Errno::EAGAIN);
        }
        let (group, session) = match self.nodes.get(&parent) {
            Some(node) if node.zombie.is_none() => (node.group, node.session),
            _ => return Err(Errno::ESRCH),
        };
        let mut pid = self.next;
        while self.nodes.contains_key(&pid) || pid == 0 {
            pid = pid.checked_add(1).unwrap_or(INIT + 1);
        }
        self.next = pid.checked_add(1).unwrap_or(INIT + 1);
        self.nodes.insert(pid, Node { parent, group, session, zombie: None, children: BTreeSet::new() });
        if let Some(node) = self.nodes.get_mut(&parent) {
            node.children.insert(pid);
        }
        Ok(pid)
    }

    /// `pid` ended with `status`: it becomes a zombie, its children go to init. Returns
    /// its parent (which gets SIGCHLD) and whether init got zombies to reap.
    pub fn exit(&mut self, pid: Pid, status: ExitStatus) -> Result<(Pid, bool), Errno> {
        let node = self.nodes.get_mut(&pid).filter(|node| node.zombie.is_none()).ok_or(Errno::ESRCH)?;
        node.zombie = Some(status);
        let parent = node.parent;
        let orphans = core::mem::take(&mut node.children);
        let mut zombies_for_init = false;
        for orphan in &orphans {
            if let Some(child) = self.nodes.get_mut(orphan) {
                child.parent = INIT;
                zombies_for_init |= child.zombie.is_some();
            }
        }
        if pid != INIT {
            if let Some(init) = self.nodes.get_mut(&INIT) {
                init.children.extend(orphans);
            }
        }
        Ok((parent, zombies_for_init))
    }

    /// `wait4` for `caller`: reaps a matching zombie (the lowest pid first), or says some
    /// matching child is still running; ECHILD when no child matches.
    pub fn wait(&mut self, caller: Pid, selector: Selector) -> Result<Waited, Errno> {
        let node = self.nodes.get(&caller).ok_or(Errno::ESRCH)?;
        let matching: alloc::vec::Vec<Pid> = node
            .children
            .iter()
            .copied()
            .filter(|child| match selector {
                Selector::Pid(pid) => *child == pid,
                Selector::Any => true,
                Selector::Group(group) => self.nodes.get(child).is_some_and(|node| node.group == group),
            })
            .collect();
        if matching.is_empty() {
            return Err(Errno::ECHILD);
        }
        let zombie = matching.iter().find_map(|pid| Some((*pid, self.nodes.get(pid)?.zombie?)));
        let Some((pid, status)) = zombie else { return Ok(Waited::NotYet) };
        self.nodes.remove(&pid);
        if let Some(node) = self.nodes.get_mut(&caller) {
            node.children.remove(&pid);
        }
        Ok(Waited::Reaped(pid, status))
    }

    /// `setpgid(pid, group)` called by `caller` (0 for either means the caller / `pid`):
    /// only the caller or its child in the same session, into a group of that session or
    /// a new one named after `pid`; never a session leader.
    pub fn set_group(&mut self, caller: Pid, pid: Pid, group: Pid) -> Result<(), Errno> {
        let pid = if pid == 0 { caller } else { pid };
        let group = if group == 0 { pid } else { group };
        let target = self.nodes.get(&pid).filter(|node| node.zombie.is_none()).ok_or(Errno::ESRCH)?;
        if pid != caller && target.parent != caller {
            return Err(Errno::ESRCH);
        }
        let caller_session = self.session(caller).ok_or(Errno::ESRCH)?;
        if target.session != caller_session || target.session == pid {
            return Err(Errno::EPERM);
        }
        if group != pid && !self.nodes.values().any(|node| node.group == group && node.session == caller_session) {
            return Err(Errno::EPERM);
        }
        if let Some(node) = self.nodes.get_mut(&pid) {
            node.group = group;
        }
        Ok(())
    }

    /// `setsid`: `pid` leads a new session and group; EPERM if it already leads a group.
    pub fn new_session(&mut self, pid: Pid) -> Result<Pid, Errno> {
        if self.nodes.values().any(|node| node.group == pid) {
            return Err(Errno::EPERM);
        }
        let node = self.nodes.get_mut(&pid).ok_or(Errno::ESRCH)?;
        node.group = pid;
        node.session = pid;
        Ok(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_waited_for_and_reaped_once() {
        let mut tree = ProcessTree::new(16);
        let shell = tree.spawn(INIT).unwrap();
        let job = tree.spawn(shell).unwrap();
        assert_eq!(tree.parent(job), Some(shell));
        assert_eq!(tree.wait(shell, Selector::Any), Ok(Waited::NotYet));
        assert_eq!(tree.exit(job, ExitStatus::Exited(3)), Ok((shell, false)));
        assert!(!tree.is_alive(job));
        assert_eq!(tree.wait(shell, Selector::Pid(job)), Ok(Waited::Reaped(job, ExitStatus::Exited(3))));
        assert_eq!(tree.wait(shell, Selector::Any), Err(Errno::ECHILD));
        assert_eq!(tree.wait(shell, Selector::Pid(999)), Err(Errno::ECHILD));
        assert_eq!(tree.len(), 2);
    }

    #[test]
    fn orphans_go_to_init_which_reaps_them() {
        let mut tree = ProcessTree::new(16);
        let parent = tree.spawn(INIT).unwrap();
        let child = tree.spawn(parent).unwrap();
        let zombie = tree.spawn(parent).unwrap();
        tree.exit(zombie, ExitStatus::Exited(0)).unwrap();
        assert_eq!(tree.exit(parent, ExitStatus::Exited(0)), Ok((INIT, true)), "init inherits a zombie");
        assert_eq!(tree.parent(child), Some(INIT));
        let mut reaped = alloc::vec::Vec::new();
        while let Ok(Waited::Reaped(pid, _)) = tree.wait(INIT, Selector::Any) {
            reaped.push(pid);
        }
        assert_eq!(reaped, [parent, zombie], "lowest pid first; the living child stays");
        assert_eq!(tree.wait(INIT, Selector::Any), Ok(Waited::NotYet));
    }

    #[test]
    fn a_fork_bomb_meets_eagain() {
        let mut tree = ProcessTree::new(8);
        let mut last = INIT;
        let mut made = 0;
        while let Ok(pid) = tree.spawn(last) {
            last = pid;
            made += 1;
        }
        assert_eq!(made, 7);
        assert_eq!(tree.spawn(INIT), Err(Errno::EAGAIN));
        tree.exit(last, ExitStatus::Exited(0)).unwrap();
        assert_eq!(tree.spawn(INIT), Err(Errno::EAGAIN), "a zombie still counts");
        let parent = tree.parent(last).unwrap();
        tree.wait(parent, Selector::Any).unwrap();
        assert!(tree.spawn(INIT).is_ok(), "reaping frees the slot");
    }

    #[test]
    fn groups_select_waits_and_follow_setpgid_rules() {
        let mut tree = ProcessTree::new(16);
        let shell = tree.spawn(INIT).unwrap();
        tree.new_session(shell).unwrap();
        let left = tree.spawn(shell).unwrap();
        let right = tree.spawn(shell).unwrap();
        tree.set_group(shell, left, 0).unwrap();
        tree.set_group(shell, right, left).unwrap();
        assert_eq!(tree.members(left).collect::<alloc::vec::Vec<_>>(), [left, right]);
        assert_eq!(tree.set_group(shell, shell, left), Err(Errno::EPERM), "a session leader stays");
        assert_eq!(tree.set_group(left, right, 0), Err(Errno::ESRCH), "not the caller's child");
        assert_eq!(tree.set_group(shell, left, 4242), Err(Errno::EPERM), "no such group in the session");
        tree.exit(right, ExitStatus::Exited(1)).unwrap();
        let selector = Selector::new(&tree, shell, -(left as i64));
        assert_eq!(tree.wait(shell, selector), Ok(Waited::Reaped(right, ExitStatus::Exited(1))));
        assert_eq!(Selector::new(&tree, shell, 0), Selector::Group(shell));
        assert_eq!(tree.new_session(left), Err(Errno::EPERM), "a group leader cannot start a session");
        assert_eq!(tree.spawn(999), Err(Errno::ESRCH));
    }
}
