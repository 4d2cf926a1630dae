//! Signals as a process holds them: what each signal does (its disposition), which are
//! blocked, which are pending, and which one is delivered next; and how a child's end is
//! encoded for `wait4`. Numbers and flags are Linux's; default actions are signal(7)'s.
//!
//! Delivering one (building the signal frame on the user stack, `rt_sigreturn`) needs the
//! process's registers and memory and lives with them; the decisions are here.

use linux_raw_sys::general as uapi;

use crate::linux::Errno;

/// Signals are numbered 1 to this (Linux's `_NSIG`).
pub const COUNT: u32 = 64;

/// A signal number, checked to be 1..=64.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(u32);

impl Signal {
    /// SIGHUP.
    pub const HANGUP: Signal = Signal(uapi::SIGHUP);
    /// SIGINT (Ctrl-C).
    pub const INTERRUPT: Signal = Signal(uapi::SIGINT);
    /// SIGQUIT.
    pub const QUIT: Signal = Signal(uapi::SIGQUIT);
    /// SIGILL.
    pub const ILLEGAL: Signal = Signal(uapi::SIGILL);
    /// SIGTRAP.
    pub const TRAP: Signal = Signal(uapi::SIGTRAP);
    /// SIGABRT.
    pub const ABORT: Signal = Signal(uapi::SIGABRT);
    /// SIGBUS.
    pub const BUS: Signal = Signal(uapi::SIGBUS);
    /// SIGFPE.
    pub const ARITHMETIC: Signal = Signal(uapi::SIGFPE);
    /// SIGKILL: cannot be caught, blocked or ignored.
    pub const KILL: Signal = Signal(uapi::SIGKILL);
    /// SIGSEGV.
    pub const SEGMENTATION: Signal = Signal(uapi::SIGSEGV);
    /// SIGPIPE.
    pub const PIPE: Signal = Signal(uapi::SIGPIPE);
    /// SIGALRM.
    pub const ALARM: Signal = Signal(uapi::SIGALRM);
    /// SIGTERM.
    pub const TERMINATE: Signal = Signal(uapi::SIGTERM);
    /// SIGCHLD.
    pub const CHILD: Signal = Signal(uapi::SIGCHLD);
    /// SIGCONT.
    pub const CONTINUE: Signal = Signal(uapi::SIGCONT);
    /// SIGSTOP: cannot be caught, blocked or ignored.
    pub const STOP: Signal = Signal(uapi::SIGSTOP);
    /// SIGTSTP (Ctrl-Z).
    pub const TERMINAL_STOP: Signal = Signal(uapi::SIGTSTP);
    /// SIGSYS.
    pub const BAD_SYSTEM_CALL: Signal = Signal(uapi::SIGSYS);

    /// The signal numbered `number`, if 1..=64 (EINVAL otherwise, as `kill` answers).
    pub fn new(number: u64) -> Result<Signal, Errno> {
        u32::try_from(number).ok().filter(|n| (1..=COUNT).contains(n)).map(Signal).ok_or(Errno::EINVAL)
    }

    /// Its number.
    pub const fn number(self) -> u32 {
        self.0
    }

    const fn bit(self) -> u64 {
        1 << (self.0 - 1)
    }

    /// Whether its action and mask can be changed (not SIGKILL or SIGSTOP).
    pub const fn can_be_handled(self) -> bool {
        self.0 != uapi::SIGKILL && self.0 != uapi::SIGSTOP
    }

    /// What happens when it is delivered with the default disposition (signal(7)).
    pub const fn default_action(self) -> DefaultAction {
        match self.0 {
            uapi::SIGCHLD | uapi::SIGURG | uapi::SIGWINCH => DefaultAction::Ignore,
            uapi::SIGCONT => DefaultAction::Continue,
            uapi::SIGSTOP | uapi::SIGTSTP | uapi::SIGTTIN | uapi::SIGTTOU => DefaultAction::Stop,
            uapi::SIGQUIT
            | uapi::SIGILL
            | uapi::SIGTRAP
            | uapi::SIGABRT
            | uapi::SIGBUS
            | uapi::SIGFPE
            | uapi::SIGSEGV
            | uapi::SIGXCPU
            | uapi::SIGXFSZ
            | uapi::SIGSYS => DefaultAction::CoreDump,
            _ => DefaultAction::Terminate,
        }
    }
}

/// What a signal's default disposition does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// End the process.
    Terminate,
    /// End the process, reported as having dumped core (no core file is written).
    CoreDump,
    /// Nothing.
    Ignore,
    /// Stop the process until SIGCONT.
    Stop,
    /// Continue a stopped process.
    Continue,
}

/// A set of signals (Linux's `sigset_t`, 64 bits: signal n is bit n-1).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SignalSet(pub u64);

impl SignalSet {
    /// The empty set.
    pub const EMPTY: SignalSet = SignalSet(0);

    /// Whether `signal` is in the set.
    pub const fn contains(self, signal: Signal) -> bool {
        self.0 & signal.bit() != 0
    }

    /// The set with `signal` added.
    pub const fn with(self, signal: Signal) -> SignalSet {
        SignalSet(self.0 | signal.bit())
    }

    /// The set with `signal` removed.
    pub const fn without(self, signal: Signal) -> SignalSet {
        SignalSet(self.0 & !signal.bit())
    }

    /// The set without the signals that cannot be blocked.
    pub const fn blockable(self) -> SignalSet {
        self.without(Signal::KILL).without(Signal::STOP)
    }
}

/// What a process has asked a signal to do (`rt_sigaction`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Disposition {
    /// The signal's default action.
    #[default]
    Default,
    /// Discard it.
    Ignore,
    /// Run a handler.
    Handler {
        /// The handler's address.
        handler: u64,
        /// `SA_*` flags.
        flags: u64,
        /// Where the handler returns to (`SA_RESTORER`: libc's `rt_sigreturn` stub).
        restorer: u64,
        /// Signals blocked while it runs (besides the signal itself unless `SA_NODEFER`).
        mask: SignalSet,
    },
}

/// `sa_handler` values that are not addresses.
const HANDLER_DEFAULT: u64 = 0;
const HANDLER_IGNORE: u64 = 1;

impl Disposition {
    /// The disposition `struct sigaction`'s fields describe.
    pub fn from_user(handler: u64, flags: u64, restorer: u64, mask: SignalSet) -> Disposition {
        match handler {
            HANDLER_DEFAULT => Disposition::Default,
            HANDLER_IGNORE => Disposition::Ignore,
            _ => Disposition::Handler { handler, flags, restorer, mask: mask.blockable() },
        }
    }

    /// The fields `rt_sigaction` reports back: handler, flags, restorer, mask.
    pub fn to_user(self) -> (u64, u64, u64, SignalSet) {
        match self {
            Disposition::Default => (HANDLER_DEFAULT, 0, 0, SignalSet::EMPTY),
            Disposition::Ignore => (HANDLER_IGNORE, 0, 0, SignalSet::EMPTY),
            Disposition::Handler { handler, flags, restorer, mask } => (handler, flags, restorer, mask),
        }
    }
}

/// `rt_sigprocmask`'s `how`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MaskChange {
    /// Add to the blocked set.
    Block,
    /// Remove from it.
    Unblock,
    /// Replace it.
    Set,
}

impl MaskChange {
    /// The change `how` names (EINVAL otherwise).
    pub fn new(how: u64) -> Result<MaskChange, Errno> {
        match u32::try_from(how) {
            Ok(uapi::SIG_BLOCK) => Ok(MaskChange::Block),
            Ok(uapi::SIG_UNBLOCK) => Ok(MaskChange::Unblock),
            Ok(uapi::SIG_SETMASK) => Ok(MaskChange::Set),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// What delivering the next signal means.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Run the handler: the caller builds the frame, then blocks `mask_during` until
    /// `rt_sigreturn` restores the mask saved in the frame.
    Handle {
        /// The signal.
        signal: Signal,
        /// The disposition's handler, flags and restorer.
        handler: u64,
        /// `SA_*` flags.
        flags: u64,
        /// The handler's return address.
        restorer: u64,
        /// The blocked set while the handler runs.
        mask_during: SignalSet,
    },
    /// End the process by this signal.
    Terminate {
        /// The signal.
        signal: Signal,
        /// Whether the status says "core dumped".
        core_dumped: bool,
    },
    /// Stop the process.
    Stop(Signal),
}

/// A process's signal state.
#[derive(Clone, Debug)]
pub struct Signals {
    dispositions: [Disposition; COUNT as usize],
    blocked: SignalSet,
    pending: SignalSet,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            dispositions: [Disposition::Default; COUNT as usize],
            blocked: SignalSet::EMPTY,
            pending: SignalSet::EMPTY,
        }
    }
}

impl Signals {
    /// The blocked set.
    pub const fn blocked(&self) -> SignalSet {
        self.blocked
    }

    /// The pending set.
    pub const fn pending(&self) -> SignalSet {
        self.pending
    }

    /// `signal`'s disposition.
    pub fn disposition(&self, signal: Signal) -> Disposition {
        self.dispositions[(signal.0 - 1) as usize]
    }

    /// `rt_sigaction`: sets `signal`'s disposition, returning the old one. EINVAL for
    /// SIGKILL and SIGSTOP. Ignoring a pending signal discards it.
    pub fn set_disposition(&mut self, signal: Signal, disposition: Disposition) -> Result<Disposition, Errno> {
        if !signal.can_be_handled() {
            return Err(Errno::EINVAL);
        }
        let old = core::mem::replace(&mut self.dispositions[(signal.0 - 1) as usize], disposition);
        if self.discards(signal) {
            self.pending = self.pending.without(signal);
        }
        Ok(old)
    }

    /// `rt_sigprocmask`: changes the blocked set, returning the old one. SIGKILL and SIGSTOP
    /// are silently left unblocked, as Linux does.
    pub fn change_mask(&mut self, change: MaskChange, set: SignalSet) -> SignalSet {
        let old = self.blocked;
        self.blocked = match change {
            MaskChange::Block => SignalSet(old.0 | set.0),
            MaskChange::Unblock => SignalSet(old.0 & !set.0),
            MaskChange::Set => set,
        }
        .blockable();
        old
    }

    /// Sets the blocked set (a handler's end restoring the saved mask).
    pub fn restore_mask(&mut self, set: SignalSet) {
        self.blocked = set.blockable();
    }

    /// Whether `signal` would be thrown away on arrival (ignored, explicitly or by default).
    fn discards(&self, signal: Signal) -> bool {
        match self.disposition(signal) {
            Disposition::Ignore => true,
            Disposition::Default => signal.default_action() == DefaultAction::Ignore,
            Disposition::Handler { .. } => false,
        }
    }

    /// A signal arrives: pending unless discarded. Returns whether it is now pending (the
    /// caller wakes a sleeping process when an unblocked one is).
    pub fn send(&mut self, signal: Signal) -> bool {
        if self.discards(signal) && signal != Signal::KILL && signal != Signal::STOP {
            return false;
        }
        self.pending = self.pending.with(signal);
        true
    }

    /// Whether a pending signal is not blocked (a sleeping system call is interrupted).
    pub const fn has_deliverable(&self) -> bool {
        self.pending.0 & !self.blocked.0 != 0
    }

    /// Takes the lowest pending, unblocked signal and says what to do with it. Continue
    /// signals handled by default just leave the pending set.
    pub fn next_delivery(&mut self) -> Option<Delivery> {
        while self.has_deliverable() {
            let deliverable = self.pending.0 & !self.blocked.0;
            let signal = Signal(deliverable.trailing_zeros() + 1);
            self.pending = self.pending.without(signal);
            match self.disposition(signal) {
                Disposition::Ignore => continue,
                Disposition::Handler { handler, flags, restorer, mask } => {
                    let nodefer = flags & u64::from(uapi::SA_NODEFER) != 0;
                    let mut mask_during = SignalSet(self.blocked.0 | mask.0);
                    if !nodefer {
                        mask_during = mask_during.with(signal);
                    }
                    if flags & u64::from(uapi::SA_RESETHAND) != 0 {
                        self.dispositions[(signal.0 - 1) as usize] = Disposition::Default;
                    }
                    return Some(Delivery::Handle {
                        signal,
                        handler,
                        flags,
                        restorer,
                        mask_during: mask_during.blockable(),
                    });
                }
                Disposition::Default => match signal.default_action() {
                    DefaultAction::Ignore | DefaultAction::Continue => continue,
                    DefaultAction::Stop => return Some(Delivery::Stop(signal)),
                    DefaultAction::Terminate => return Some(Delivery::Terminate { signal, core_dumped: false }),
                    DefaultAction::CoreDump => return Some(Delivery::Terminate { signal, core_dumped: true }),
                },
            }
        }
        None
    }

    /// The state a child starts with after `fork`: the same dispositions and mask, nothing
    /// pending.
    pub fn forked(&self) -> Signals {
        Signals { pending: SignalSet::EMPTY, ..self.clone() }
    }

    /// After `execve`: handlers are reset to default (their code is gone), ignored signals
    /// stay ignored, the mask and pending signals are kept.
    pub fn exec(&mut self) {
        for disposition in &mut self.dispositions {
            if matches!(disposition, Disposition::Handler { .. }) {
                *disposition = Disposition::Default;
            }
        }
    }
}

/// How a child ended, as `wait4` encodes it in its status word.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit` with this code (the low 8 bits count).
    Exited(u8),
    /// A signal ended it.
    Killed {
        /// The signal.
        signal: Signal,
        /// Reported as having dumped core.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// The `wstatus` word (`WIFEXITED`/`WEXITSTATUS`, `WIFSIGNALED`/`WTERMSIG`/`WCOREDUMP`).
    pub const fn wait_status(self) -> u32 {
        match self {
            ExitStatus::Exited(code) => (code as u32) << 8,
            ExitStatus::Killed { signal, core_dumped } => signal.0 | if core_dumped { 0x80 } else { 0 },
        }
    }

    /// The status a shell reports: the code, or 128 plus the signal.
    pub const fn shell_status(self) -> u32 {
        match self {
            ExitStatus::Exited(code) => code as u32,
            ExitStatus::Killed { signal, .. } => 128 + signal.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(mask: SignalSet, flags: u64) -> Disposition {
        Disposition::from_user(0x401000, flags | u64::from(uapi::SA_RESTORER), 0x401100, mask)
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(Signal::new(0), Err(Errno::EINVAL));
        assert_eq!(Signal::new(65), Err(Errno::EINVAL));
        assert_eq!(Signal::new(u64::MAX), Err(Errno::EINVAL));
        assert_eq!(Signal::new(64).map(Signal::number), Ok(64));
        assert_eq!(Signal::INTERRUPT.number(), 2);
    }

    #[test]
    fn default_actions_follow_signal_7() {
        assert_eq!(Signal::INTERRUPT.default_action(), DefaultAction::Terminate);
        assert_eq!(Signal::SEGMENTATION.default_action(), DefaultAction::CoreDump);
        assert_eq!(Signal::CHILD.default_action(), DefaultAction::Ignore);
        assert_eq!(Signal::TERMINAL_STOP.default_action(), DefaultAction::Stop);
        assert_eq!(Signal::new(40).unwrap().default_action(), DefaultAction::Terminate, "real-time signals");
    }

    #[test]
    fn kill_and_stop_cannot_be_caught_or_blocked() {
        let mut signals = Signals::default();
        assert_eq!(signals.set_disposition(Signal::KILL, Disposition::Ignore), Err(Errno::EINVAL));
        assert_eq!(signals.set_disposition(Signal::STOP, handler(SignalSet::EMPTY, 0)), Err(Errno::EINVAL));
        signals.change_mask(MaskChange::Set, SignalSet(u64::MAX));
        assert!(!signals.blocked().contains(Signal::KILL));
        assert!(signals.blocked().contains(Signal::INTERRUPT));
        signals.send(Signal::KILL);
        assert_eq!(signals.next_delivery(), Some(Delivery::Terminate { signal: Signal::KILL, core_dumped: false }));
    }

    #[test]
    fn blocked_signals_wait_and_the_lowest_comes_first() {
        let mut signals = Signals::default();
        signals.set_disposition(Signal::TERMINATE, handler(SignalSet::EMPTY, 0)).unwrap();
        signals.change_mask(MaskChange::Block, SignalSet::EMPTY.with(Signal::INTERRUPT));
        assert!(signals.send(Signal::INTERRUPT));
        assert!(signals.send(Signal::TERMINATE));
        let Some(Delivery::Handle { signal, mask_during, .. }) = signals.next_delivery() else { panic!() };
        assert_eq!(signal, Signal::TERMINATE, "SIGINT is blocked");
        assert!(mask_during.contains(Signal::TERMINATE), "the signal is blocked in its own handler");
        assert!(mask_during.contains(Signal::INTERRUPT), "the old mask stays");
        assert_eq!(signals.next_delivery(), None);
        signals.change_mask(MaskChange::Unblock, SignalSet::EMPTY.with(Signal::INTERRUPT));
        assert!(signals.has_deliverable());
        assert_eq!(
            signals.next_delivery(),
            Some(Delivery::Terminate { signal: Signal::INTERRUPT, core_dumped: false })
        );
    }

    #[test]
    fn ignored_signals_vanish_and_flags_are_honoured() {
        let mut signals = Signals::default();
        assert!(!signals.send(Signal::CHILD), "SIGCHLD is ignored by default");
        signals.set_disposition(Signal::PIPE, Disposition::Ignore).unwrap();
        assert!(!signals.send(Signal::PIPE));
        signals.change_mask(MaskChange::Block, SignalSet::EMPTY.with(Signal::HANGUP));
        signals.send(Signal::HANGUP);
        signals.set_disposition(Signal::HANGUP, Disposition::Ignore).unwrap();
        assert_eq!(signals.pending(), SignalSet::EMPTY, "ignoring discards a pending signal");

        let flags = u64::from(uapi::SA_NODEFER | uapi::SA_RESETHAND);
        signals.set_disposition(Signal::ALARM, handler(SignalSet::EMPTY, flags)).unwrap();
        signals.send(Signal::ALARM);
        let Some(Delivery::Handle { mask_during, .. }) = signals.next_delivery() else { panic!() };
        assert!(!mask_during.contains(Signal::ALARM), "SA_NODEFER");
        assert_eq!(signals.disposition(Signal::ALARM), Disposition::Default, "SA_RESETHAND");
    }

    #[test]
    fn fork_and_exec_keep_what_linux_keeps() {
        let mut signals = Signals::default();
        signals.set_disposition(Signal::INTERRUPT, Disposition::Ignore).unwrap();
        signals.set_disposition(Signal::TERMINATE, handler(SignalSet::EMPTY, 0)).unwrap();
        signals.change_mask(MaskChange::Block, SignalSet::EMPTY.with(Signal::QUIT));
        signals.send(Signal::QUIT);
        let mut child = signals.forked();
        assert_eq!(child.pending(), SignalSet::EMPTY);
        assert_eq!(child.blocked(), signals.blocked());
        child.exec();
        assert_eq!(child.disposition(Signal::INTERRUPT), Disposition::Ignore);
        assert_eq!(child.disposition(Signal::TERMINATE), Disposition::Default);
    }

    #[test]
    fn wait_statuses_are_linux_words() {
        assert_eq!(ExitStatus::Exited(3).wait_status(), 0x300);
        assert_eq!(ExitStatus::Killed { signal: Signal::SEGMENTATION, core_dumped: true }.wait_status(), 0x8b);
        assert_eq!(ExitStatus::Killed { signal: Signal::INTERRUPT, core_dumped: false }.shell_status(), 130);
    }
}
