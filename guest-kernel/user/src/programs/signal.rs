//! Signals: handlers (plain and SA_SIGINFO), masks and pending signals, SA_RESETHAND,
//! SA_RESTART and EINTR, SIGCHLD with sigsuspend, kill of self, a child and a process
//! group, and the default actions as wait4 reports them.

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{
    errno, errno_name, exit_now, fork, in_child, pipe, read, sleep_ms, wait_for, write_all, Fork, Status,
};
use crate::signals::{
    blocked, contains, current, install, kill, mask, own_pid, parent_pid, pending, set, set_of, Action,
};

static DELIVERED: AtomicUsize = AtomicUsize::new(0);
static SEEN_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SEEN_SENDER: AtomicI32 = AtomicI32::new(0);
static SEEN_CODE: AtomicI32 = AtomicI32::new(0);
static BLOCKED_INSIDE: AtomicBool = AtomicBool::new(false);

extern "C" fn count(signal: i32) {
    DELIVERED.fetch_add(1, Ordering::SeqCst);
    SEEN_SIGNAL.store(signal, Ordering::SeqCst);
    // Is the signal itself blocked while its handler runs (no SA_NODEFER)?
    let mut now = set_of(&[]);
    // SAFETY: a query of the mask into a valid set; sigprocmask is async-signal-safe.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) };
    BLOCKED_INSIDE.store(contains(&now, signal), Ordering::SeqCst);
}

extern "C" fn record_info(signal: i32, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    DELIVERED.fetch_add(1, Ordering::SeqCst);
    SEEN_SIGNAL.store(signal, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let info = unsafe { &*info };
    // SAFETY: for a signal sent by kill the sender fields are the valid union member.
    SEEN_SENDER.store(unsafe { info.si_pid() }, Ordering::SeqCst);
    SEEN_CODE.store(info.si_code, Ordering::SeqCst);
}

fn reset() {
    DELIVERED.store(0, Ordering::SeqCst);
    SEEN_SIGNAL.store(0, Ordering::SeqCst);
    SEEN_SENDER.store(0, Ordering::SeqCst);
    SEEN_CODE.store(0, Ordering::SeqCst);
    BLOCKED_INSIDE.store(false, Ordering::SeqCst);
}

fn delivered() -> usize {
    DELIVERED.load(Ordering::SeqCst)
}

fn spawn(body: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    match fork() {
        Err(error) => Err(format!("fork failed: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(body()),
        Ok(Fork::Parent(pid)) => Ok(pid),
    }
}

fn handler_runs_on_kill_of_self() -> Outcome {
    reset();
    install(libc::SIGUSR1, Action::Handler(count, 0))?;
    kill(own_pid(), libc::SIGUSR1).map_err(errno_name)?;
    // A signal a process sends itself is delivered before kill returns.
    expect_eq("handler runs", delivered(), 1)?;
    expect_eq("handler's signal number", SEEN_SIGNAL.load(Ordering::SeqCst), libc::SIGUSR1)?;
    ensure(BLOCKED_INSIDE.load(Ordering::SeqCst), || "the signal was not blocked inside its own handler".into())?;
    let after = blocked()?;
    ensure(!contains(&after, libc::SIGUSR1), || "the mask was not restored after the handler".into())
}

fn siginfo_names_the_sender() -> Outcome {
    reset();
    install(libc::SIGUSR2, Action::InfoHandler(record_info, 0))?;
    kill(own_pid(), libc::SIGUSR2).map_err(errno_name)?;
    expect_eq("handler runs", delivered(), 1)?;
    expect_eq("si_pid", SEEN_SENDER.load(Ordering::SeqCst), own_pid())?;
    expect_eq("si_code (SI_USER)", SEEN_CODE.load(Ordering::SeqCst), libc::SI_USER)
}

fn blocked_signals_wait_and_do_not_queue() -> Outcome {
    reset();
    install(libc::SIGUSR1, Action::Handler(count, 0))?;
    mask(libc::SIG_BLOCK, &[libc::SIGUSR1])?;
    kill(own_pid(), libc::SIGUSR1).map_err(errno_name)?;
    kill(own_pid(), libc::SIGUSR1).map_err(errno_name)?;
    expect_eq("deliveries while blocked", delivered(), 0)?;
    ensure(contains(&pending()?, libc::SIGUSR1), || "SIGUSR1 is not pending".into())?;
    mask(libc::SIG_UNBLOCK, &[libc::SIGUSR1])?;
    expect_eq("deliveries after unblocking (standard signals do not queue)", delivered(), 1)?;
    ensure(!contains(&pending()?, libc::SIGUSR1), || "SIGUSR1 still pending after delivery".into())
}

fn kill_and_stop_cannot_be_blocked_or_caught() -> Outcome {
    let all: Vec<i32> = (1..=31).collect();
    let previous = mask(libc::SIG_BLOCK, &all)?;
    let now = blocked()?;
    // SAFETY: restoring the saved mask.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    ensure(contains(&now, libc::SIGUSR2) && contains(&now, libc::SIGTERM), || {
        "blocking every signal blocked too few".into()
    })?;
    ensure(!contains(&now, libc::SIGKILL) && !contains(&now, libc::SIGSTOP), || {
        "SIGKILL or SIGSTOP was blocked".into()
    })?;
    expect_eq("sigaction(SIGKILL, handler)", set(libc::SIGKILL, Action::Handler(count, 0)), Err(libc::EINVAL))?;
    expect_eq("sigaction(SIGSTOP, SIG_IGN)", set(libc::SIGSTOP, Action::Ignore), Err(libc::EINVAL))?;
    expect_eq("sigaction(65, SIG_IGN)", set(65, Action::Ignore), Err(libc::EINVAL))?;
    expect_eq("kill(self, 65)", kill(own_pid(), 65), Err(libc::EINVAL))
}

fn reset_hand_restores_the_default() -> Outcome {
    reset();
    install(libc::SIGUSR1, Action::Handler(count, libc::SA_RESETHAND))?;
    kill(own_pid(), libc::SIGUSR1).map_err(errno_name)?;
    expect_eq("first delivery", delivered(), 1)?;
    expect_eq("disposition afterwards", current(libc::SIGUSR1)?, libc::SIG_DFL)
}

fn ignored_signals_vanish() -> Outcome {
    install(libc::SIGUSR1, Action::Ignore)?;
    kill(own_pid(), libc::SIGUSR1).map_err(errno_name)?;
    ensure(!contains(&pending()?, libc::SIGUSR1), || "an ignored signal stayed pending".into())
}

fn default_actions() -> Outcome {
    for (signal, expected) in [
        (libc::SIGTERM, Status::Signaled(libc::SIGTERM)),
        (libc::SIGKILL, Status::Signaled(libc::SIGKILL)),
        (libc::SIGUSR2, Status::Signaled(libc::SIGUSR2)),
        (libc::SIGSEGV, Status::Signaled(libc::SIGSEGV)),
        (libc::SIGINT, Status::Signaled(libc::SIGINT)),
        (libc::SIGHUP, Status::Signaled(libc::SIGHUP)),
        (libc::SIGQUIT, Status::Signaled(libc::SIGQUIT)),
        (libc::SIGABRT, Status::Signaled(libc::SIGABRT)),
        // Ignored by default: the child carries on and exits.
        (libc::SIGCHLD, Status::Exited(0)),
        (libc::SIGURG, Status::Exited(0)),
        (libc::SIGWINCH, Status::Exited(0)),
        (libc::SIGCONT, Status::Exited(0)),
    ] {
        let status = in_child(|| {
            // SIGKILL's disposition cannot be set, not even to its default.
            if signal != libc::SIGKILL && set(signal, Action::Default).is_err() {
                return 90;
            }
            let _ = kill(own_pid(), signal);
            0
        })?;
        expect_eq(&format!("a child sending itself signal {signal}"), status, expected)?;
    }
    Ok(())
}

fn kill_a_child() -> Outcome {
    let child = spawn(|| pause_forever())?;
    sleep_ms(20);
    kill(child, libc::SIGTERM).map_err(errno_name)?;
    expect_eq("the child", wait_for(child)?, Status::Signaled(libc::SIGTERM))?;
    expect_eq("kill of the reaped child", kill(child, libc::SIGTERM), Err(libc::ESRCH))
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause takes no arguments; the process waits for the signal that ends it.
        unsafe { libc::pause() };
    }
}

fn kill_a_process_group() -> Outcome {
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let leader = spawn(|| {
        // SAFETY: setpgid(0, 0) makes this child a group leader; no memory arguments.
        if unsafe { libc::setpgid(0, 0) } == -1 {
            return 90;
        }
        let Ok(member) = spawn(|| pause_forever()) else { return 91 };
        if write_all(write_end, format!("{member}").as_bytes()).is_err() {
            return 92;
        }
        pause_forever()
    })?;
    drop(writer);
    // One read: the leader and its member keep the write end open.
    let mut report = [0u8; 16];
    let count = read(reader.as_raw_fd(), &mut report).map_err(errno_name)?;
    let report = &report[..count];
    let member: libc::pid_t = String::from_utf8_lossy(report)
        .parse()
        .map_err(|_| format!("the group leader reported {report:?}, not its member's pid"))?;
    // SAFETY: getpgid takes a pid only.
    let groups = unsafe { (libc::getpgid(leader), libc::getpgid(member)) };
    expect_eq("the leader's and the member's group", groups, (leader, leader))?;
    kill(-leader, libc::SIGTERM).map_err(|error| format!("kill(-{leader}): {}", errno_name(error)))?;
    expect_eq("the leader", wait_for(leader)?, Status::Signaled(libc::SIGTERM))?;
    // The member, orphaned, is reaped by init once dead.
    let start = Instant::now();
    while kill(member, 0).is_ok() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!("group member {member} still exists 5 s after kill(-{leader}, SIGTERM)"));
        }
        sleep_ms(10);
    }
    Ok(())
}

fn sigchld_wakes_sigsuspend() -> Outcome {
    reset();
    install(libc::SIGCHLD, Action::Handler(count, 0))?;
    let previous = mask(libc::SIG_BLOCK, &[libc::SIGCHLD])?;
    let child = spawn(|| {
        sleep_ms(30);
        0
    })?;
    let empty = set_of(&[]);
    // SAFETY: a valid set; sigsuspend returns after a handler ran.
    let result = unsafe { libc::sigsuspend(&empty) };
    let error = errno();
    // SAFETY: restoring the saved mask.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    install(libc::SIGCHLD, Action::Default)?;
    expect_eq("sigsuspend's result", (result, error), (-1, libc::EINTR))?;
    expect_eq("SIGCHLD handler runs", (delivered(), SEEN_SIGNAL.load(Ordering::SeqCst)), (1, libc::SIGCHLD))?;
    expect_eq("the child", wait_for(child)?, Status::Exited(0))
}

/// A child signals its parent while the parent blocks in read on a pipe; with
/// `restart_flag` the read goes on, without it the read fails with EINTR.
fn interrupted_read(restart_flag: i32) -> Result<(Result<usize, i32>, usize), String> {
    reset();
    install(libc::SIGUSR1, Action::Handler(count, restart_flag))?;
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let parent = own_pid();
    let child = spawn(|| {
        sleep_ms(50);
        if kill(parent, libc::SIGUSR1).is_err() {
            return 90;
        }
        sleep_ms(50);
        i32::from(write_all(write_end, b"data").is_err())
    })?;
    drop(writer);
    let mut buffer = [0u8; 8];
    let result = read(reader.as_raw_fd(), &mut buffer);
    let handled = delivered();
    let status = wait_for(child)?;
    expect_eq("the signalling child", status, Status::Exited(0))?;
    install(libc::SIGUSR1, Action::Default)?;
    Ok((result, handled))
}

fn eintr_without_sa_restart() -> Outcome {
    expect_eq("read interrupted by a handled signal", interrupted_read(0)?, (Err(libc::EINTR), 1))
}

fn sa_restart_resumes_the_read() -> Outcome {
    expect_eq("read with SA_RESTART", interrupted_read(libc::SA_RESTART)?, (Ok(4), 1))
}

fn a_child_signals_its_parent() -> Outcome {
    reset();
    install(libc::SIGUSR2, Action::InfoHandler(record_info, 0))?;
    let previous = mask(libc::SIG_BLOCK, &[libc::SIGUSR2])?;
    let child = spawn(|| i32::from(kill(parent_pid(), libc::SIGUSR2).is_err()))?;
    let status = wait_for(child)?;
    // SAFETY: restoring the saved mask delivers the pending signal here.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    expect_eq("the child", status, Status::Exited(0))?;
    expect_eq("delivered", delivered(), 1)?;
    expect_eq("si_pid is the child", SEEN_SENDER.load(Ordering::SeqCst), child)
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("signal");
    suite.case("handler_on_kill_self", handler_runs_on_kill_of_self);
    suite.case("siginfo_sender", siginfo_names_the_sender);
    suite.case("blocked_pending_not_queued", blocked_signals_wait_and_do_not_queue);
    suite.case("kill_stop_unblockable", kill_and_stop_cannot_be_blocked_or_caught);
    suite.case("sa_resethand", reset_hand_restores_the_default);
    suite.case("ignored", ignored_signals_vanish);
    suite.case("default_actions", default_actions);
    suite.case("kill_child", kill_a_child);
    suite.case("kill_process_group", kill_a_process_group);
    suite.case("sigchld_sigsuspend", sigchld_wakes_sigsuspend);
    suite.case("eintr", eintr_without_sa_restart);
    suite.case("sa_restart", sa_restart_resumes_the_read);
    suite.case("child_signals_parent", a_child_signals_its_parent);
    suite.finish()
}
