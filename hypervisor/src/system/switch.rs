//! The switch: who runs after the current domain stops, or idling when every live
//! domain sleeps, or the end of the run when none is left.

use crate::platform::Platform;
use crate::sched::policy::Reason;
use crate::system::{Step, System};
use crate::trap::frame::TrapFrame;

impl<P: Platform> System<P> {
    /// Lets the scheduler pick who runs after the current domain stops for `reason`,
    /// and puts that domain's state, ready to return to, in `frame` (written in place:
    /// under TCG each copy of a whole frame showed in the switch benchmarks; `left`: the
    /// outgoing domain's state is saved already). When every live domain sleeps, the machine
    /// halts until a timer or console interrupt wakes one (SPEC.md §20.1): [`Step::Idle`];
    /// when none is left, the run ends: [`Step::Exit`].
    pub(super) fn next_frame(&mut self, mut reason: Reason, mut left: bool, frame: &mut TrapFrame) -> Result<(), Step> {
        loop {
            let now = self.platform.read_tsc();
            match self.scheduler.switch(reason, now) {
                Some(next) => {
                    if next != self.current || left {
                        if !left {
                            self.leave_current();
                        }
                        self.enter_domain(next);
                    }
                    *frame = self.domains[next].state;
                    // The saved state came from a validated return or a new domain; keep
                    // the invariant explicit anyway.
                    if frame.prepare_return().is_some() {
                        return Ok(());
                    }
                    self.kill_current("saved state has a non-canonical rip");
                    (reason, left) = (Reason::Ended, false);
                }
                None if self.scheduler.live_count() == 0 => return Err(Step::Exit(self.finish())),
                None => {
                    if !left {
                        self.leave_current();
                        left = true;
                    }
                    self.expire(now);
                    if self.scheduler.runnable_count() == 0 {
                        self.rearm();
                        return Err(Step::Idle);
                    }
                    reason = Reason::Yield;
                }
            }
        }
    }
}
