//! `ioctl`: the terminal's requests on the console, `FIONREAD` on everything readable,
//! and the requests every file takes (`FIONBIO`, `FIOCLEX`, `FIONCLEX`). Terminal
//! requests on anything but the console are ENOTTY, which is how `isatty` tells a
//! terminal from a file or pipe; unknown requests are ENOTTY too, as on Linux.
//!
//! The console is every process's controlling terminal: `TIOCSCTTY` makes the caller's
//! group the foreground one, `TIOCNOTTY` is accepted and changes nothing.

use linux_raw_sys::general as uapi;
use linux_raw_sys::ioctl;

use super::caller::{flags, Caller};
use super::open_file::{Device, Node};
use super::outcome::{done, CallResult};
use super::world::Files;
use crate::linux::layouts::{Termios, WindowSize};
use crate::linux::Errno;
use crate::process_tree::Pid;
use crate::user_memory::{read_value, write_value};

/// `ioctl(fd, request, argument)`.
pub fn ioctl(files: &mut Files, caller: &mut Caller<'_>, fd: u64, request: u64, argument: u64) -> CallResult {
    let file = caller.file(fd)?;
    let request = flags(request);
    match request {
        ioctl::FIONBIO => {
            let on: i32 = read_value(&*caller.memory, argument)?;
            file.borrow_mut().nonblocking = on != 0;
            return done(0u64);
        }
        ioctl::FIOCLEX | ioctl::FIONCLEX => {
            let close_on_exec = if request == ioctl::FIOCLEX { u64::from(uapi::FD_CLOEXEC) } else { 0 };
            let command = crate::descriptors::DescriptorCommand::SetFlags(close_on_exec);
            caller.process.descriptors_mut().command(super::caller::descriptor(fd), command)?;
            return done(0u64);
        }
        _ => {}
    }
    let open = file.borrow();
    if matches!(open.node, Node::Path(_)) {
        return Err(Errno::EBADF);
    }
    let readable = match &open.node {
        Node::Device { device: Device::Console, .. } => {
            drop(open);
            return terminal(files, caller, request, argument);
        }
        Node::Regular { inode, offset } => files.fs.metadata(*inode)?.size.saturating_sub(*offset),
        Node::Generated { bytes, offset, .. } => (bytes.len() as u64).saturating_sub(*offset),
        Node::PipeReader(pipe) | Node::PipeWriter(pipe) => pipe.borrow().pipe.len() as u64,
        _ => return Err(Errno::ENOTTY),
    };
    if request != ioctl::FIONREAD {
        return Err(Errno::ENOTTY);
    }
    write_value(caller.memory, argument, &(readable.min(i32::MAX as u64) as i32))?;
    done(0u64)
}

/// A terminal request on the console.
fn terminal(files: &mut Files, caller: &mut Caller<'_>, request: u32, argument: u64) -> CallResult {
    let console = &mut files.console;
    match request {
        ioctl::TCGETS => write_value(caller.memory, argument, console.termios())?,
        ioctl::TCSETS | ioctl::TCSETSW | ioctl::TCSETSF => {
            let termios: Termios = read_value(&*caller.memory, argument)?;
            if request == ioctl::TCSETSF {
                console.line.discard_input();
            }
            // Output is written synchronously, so "after output drains" (TCSETSW) is now.
            console.line.set_termios(termios);
        }
        ioctl::TIOCGWINSZ => write_value(caller.memory, argument, &console.window())?,
        ioctl::TIOCSWINSZ => {
            let window: WindowSize = read_value(&*caller.memory, argument)?;
            console.set_window(window);
        }
        ioctl::TIOCGPGRP => write_value(caller.memory, argument, &(console.foreground() as i32))?,
        ioctl::TIOCSPGRP => {
            let group: i32 = read_value(&*caller.memory, argument)?;
            let group = Pid::try_from(group).map_err(|_| Errno::EINVAL)?;
            check_group(caller, group)?;
            files.console.set_foreground(group);
        }
        ioctl::TIOCGSID => {
            let leader = caller.processes.status(console.foreground()).ok_or(Errno::ENOTTY)?;
            write_value(caller.memory, argument, &(leader.session as i32))?;
        }
        ioctl::TIOCSCTTY => {
            let status = caller.processes.status(caller.pid).ok_or(Errno::ESRCH)?;
            console.set_foreground(status.group);
        }
        ioctl::TIOCNOTTY | ioctl::TCXONC | ioctl::TCSBRK => {}
        ioctl::FIONREAD | ioctl::TIOCOUTQ => {
            let count = if request == ioctl::FIONREAD { console.line.ready_bytes() } else { 0 };
            write_value(caller.memory, argument, &(count as i32))?;
        }
        ioctl::TCFLSH => match flags(argument) {
            uapi::TCIFLUSH | uapi::TCIOFLUSH => console.line.discard_input(),
            uapi::TCOFLUSH => {}
            _ => return Err(Errno::EINVAL),
        },
        _ => return Err(Errno::ENOTTY),
    }
    done(0u64)
}

/// `TIOCSPGRP`'s rule: the group must exist (ESRCH) in the caller's session (EPERM).
fn check_group(caller: &Caller<'_>, group: Pid) -> Result<(), Errno> {
    let session = caller.processes.status(caller.pid).ok_or(Errno::ESRCH)?.session;
    let mut exists = false;
    for pid in caller.processes.pids() {
        let Some(status) = caller.processes.status(pid) else { continue };
        if status.group == group && status.state != super::proc::ProcessState::Zombie {
            if status.session == session {
                return Ok(());
            }
            exists = true;
        }
    }
    Err(if exists { Errno::EPERM } else { Errno::ESRCH })
}
