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
        Node::Socket(end) => end.waiting() as u64,
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

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BAD, BUFFER};
    use super::*;
    use crate::user_memory::read_value;
    use uapi::{__NR_ioctl, __NR_read, O_RDONLY, O_RDWR};

    fn ioctl_call(world: &mut World, fd: u64, request: u32, argument: u64) -> Result<u64, Errno> {
        match world.call(__NR_ioctl, &[fd, u64::from(request), argument]) {
            Ok(super::super::Outcome::Done(value)) => Ok(value),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error),
        }
    }

    #[test]
    fn only_the_console_is_a_terminal() {
        let mut world = World::new();
        let console = world.open(b"/dev/tty", O_RDWR);
        assert_eq!(ioctl_call(&mut world, console, ioctl::TCGETS, BUFFER), Ok(0));
        let termios: Termios = read_value(&world.memory, BUFFER).unwrap();
        assert_eq!(termios, crate::tty::default_termios());
        let file = world.open(b"/etc/motd", O_RDONLY);
        let null = world.open(b"/dev/null", O_RDONLY);
        let (read_end, _) = world.pipe(0);
        for fd in [file, null, read_end] {
            assert_eq!(ioctl_call(&mut world, fd, ioctl::TCGETS, BUFFER), Err(Errno::ENOTTY), "isatty says no");
        }
        assert_eq!(ioctl_call(&mut world, console, 0x1234, BUFFER), Err(Errno::ENOTTY), "unknown requests");
        assert_eq!(ioctl_call(&mut world, 77, ioctl::TCGETS, BUFFER), Err(Errno::EBADF));
        assert_eq!(ioctl_call(&mut world, console, ioctl::TCGETS, BAD), Err(Errno::EFAULT));
    }

    #[test]
    fn modes_and_window_size_are_set_and_read() {
        let mut world = World::new();
        let console = world.open(b"/dev/console", O_RDWR);
        let mut raw = crate::tty::default_termios();
        raw.local &= !(uapi::ICANON | uapi::ECHO);
        raw.characters[uapi::VMIN as usize] = 0;
        raw.characters[uapi::VTIME as usize] = 5;
        write_value(&mut world.memory, BUFFER, &raw).unwrap();
        world.files.console_input(b"stale\n");
        assert_eq!(world.screen(), b"stale\r\n", "echoed in the old modes");
        assert_eq!(ioctl_call(&mut world, console, ioctl::TCSETSF, BUFFER), Ok(0));
        assert_eq!(world.files.console().termios(), &raw);
        match world.call(__NR_read, &[console, BUFFER, 10]) {
            Ok(super::super::Outcome::Block(wait)) => assert_eq!(wait.timeout_ns, Some(500_000_000), "VTIME"),
            other => panic!("{other:?}: TCSETSF flushed the input; VMIN 0 waits VTIME"),
        }
        world.timed_out = true;
        assert_eq!(world.ok(__NR_read, &[console, BUFFER, 10]), 0, "the timeout passed: nothing");
        world.timed_out = false;
        world.files.console_input(b"k");
        assert_eq!(world.read(console, 10), b"k", "raw mode: no line needed, no echo");
        assert_eq!(world.screen(), b"");
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCGWINSZ, BUFFER), Ok(0));
        assert_eq!(read_value::<WindowSize>(&world.memory, BUFFER).unwrap().columns, 80);
        let window = WindowSize { rows: 50, columns: 132, x_pixels: 0, y_pixels: 0 };
        write_value(&mut world.memory, BUFFER, &window).unwrap();
        ioctl_call(&mut world, console, ioctl::TIOCSWINSZ, BUFFER).unwrap();
        assert_eq!(world.files.console().window(), window);
    }

    #[test]
    fn the_foreground_group_changes_within_the_session() {
        let mut world = World::new();
        world.processes.add(8, 7, 8, 7, "job", b"");
        world.processes.add(20, 1, 20, 20, "other", b"");
        let console = world.open(b"/dev/console", O_RDWR);
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCGPGRP, BUFFER), Ok(0));
        assert_eq!(read_value::<i32>(&world.memory, BUFFER), Ok(1), "init's group at first");
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCSCTTY, 0), Ok(0));
        assert_eq!(world.files.console().foreground(), 7, "the caller's group");
        write_value(&mut world.memory, BUFFER, &8i32).unwrap();
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCSPGRP, BUFFER), Ok(0));
        assert_eq!(world.files.console().foreground(), 8);
        assert_eq!(world.files.console_input(b"\x03")[0].group, 8, "Ctrl-C goes to the new foreground group");
        write_value(&mut world.memory, BUFFER, &20i32).unwrap();
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCSPGRP, BUFFER), Err(Errno::EPERM), "another session");
        write_value(&mut world.memory, BUFFER, &99i32).unwrap();
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCSPGRP, BUFFER), Err(Errno::ESRCH));
        write_value(&mut world.memory, BUFFER, &-3i32).unwrap();
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCSPGRP, BUFFER), Err(Errno::EINVAL));
        assert_eq!(ioctl_call(&mut world, console, ioctl::TIOCGSID, BUFFER), Ok(0));
        assert_eq!(read_value::<i32>(&world.memory, BUFFER), Ok(7));
    }

    #[test]
    fn files_answer_fionread_fionbio_and_fioclex() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        world.write(write_end, b"12345");
        assert_eq!(ioctl_call(&mut world, read_end, ioctl::FIONREAD, BUFFER), Ok(0));
        assert_eq!(read_value::<i32>(&world.memory, BUFFER), Ok(5));
        let file = world.open(b"/etc/motd", O_RDONLY);
        world.read(file, 2);
        ioctl_call(&mut world, file, ioctl::FIONREAD, BUFFER).unwrap();
        assert_eq!(read_value::<i32>(&world.memory, BUFFER), Ok(4), "what is left past the offset");
        let console = world.open(b"/dev/console", O_RDWR);
        world.files.console_input(b"ab\n");
        ioctl_call(&mut world, console, ioctl::FIONREAD, BUFFER).unwrap();
        assert_eq!(read_value::<i32>(&world.memory, BUFFER), Ok(3));
        write_value(&mut world.memory, BUFFER, &1i32).unwrap();
        ioctl_call(&mut world, read_end, ioctl::FIONBIO, BUFFER).unwrap();
        world.read(read_end, 10);
        assert_eq!(world.error(__NR_read, &[read_end, BUFFER, 10]), Errno::EAGAIN);
        ioctl_call(&mut world, file, ioctl::FIOCLEX, 0).unwrap();
        assert_eq!(world.ok(uapi::__NR_fcntl, &[file, u64::from(uapi::F_GETFD)]), 1);
        ioctl_call(&mut world, file, ioctl::FIONCLEX, 0).unwrap();
        assert_eq!(world.ok(uapi::__NR_fcntl, &[file, u64::from(uapi::F_GETFD)]), 0);
        let null = world.open(b"/dev/null", O_RDONLY);
        assert_eq!(ioctl_call(&mut world, null, ioctl::FIONREAD, BUFFER), Err(Errno::ENOTTY));
    }
}
