//! Returning to a guest: a pending upcall first, events bounced to the guest kernel
//! (SPEC.md §11.4), the frame validated; a domain that cannot be returned to is killed
//! and the next one runs.

use crate::domain::vcpu::Mode;
use crate::event::upcall;
use crate::mm::domain_memory::DomainMemory;
use crate::mm::guest_memory::{self, GuestFault};
use crate::mm::paging::FrameMemory;
use crate::platform::Platform;
use crate::sched::policy::Reason;
use crate::system::{Step, System};
use crate::trap::bounce::{self, Event};
use crate::trap::frame::TrapFrame;
use alloc::format;
use alloc::string::String;
use hypercall_abi::event::EVENT_VECTOR;
use hypercall_abi::shared_info::cr2_offset;
use hypercall_abi::trace::{flags as trace_flags, kind as trace_kind, TraceRecord};
use hypercall_abi::trap::vector;
use hypercall_abi::trap::SYSCALL_VECTOR;
use zerocopy::IntoBytes;

impl<P: Platform> System<P> {
    /// Validates `frame` for return to the current domain; a frame that cannot be
    /// returned to safely kills its domain and the next one runs instead.
    pub(crate) fn finish_return(&mut self, frame: &mut TrapFrame) -> Step {
        self.finish_return_inline(frame)
    }

    /// [`Self::finish_return`] inlined, for the returns every round trip makes (a
    /// hypercall's value, a bounce, `iret`): its call, saved registers and the step passed back
    /// through memory were a tenth of a null hypercall.
    #[inline(always)]
    pub(crate) fn finish_return_inline(&mut self, frame: &mut TrapFrame) -> Step {
        match self.return_now(frame) {
            Some(step) => step,
            None => self.refuse_return(frame),
        }
    }

    /// [`Self::finish_return`]'s work for a frame that can be returned to (`None` when it
    /// cannot). Every trap ends here, so the refusal, with its report, is kept out of it.
    #[inline(always)]
    fn return_now(&mut self, frame: &mut TrapFrame) -> Option<Step> {
        let domain = &self.domains[self.current];
        // A domain picked with its hypercall preempted returns only when the call is
        // done (SPEC.md §5.5): no upcall, no guest instruction, in between.
        if domain.continuation.is_some() {
            return Some(Step::Continue);
        }
        // SPEC.md §18.4: every return to a guest delivers a pending, unmasked event first.
        if let Some(memory) = domain.memory.as_ref() {
            if upcall::upcall_due(&self.memory, memory.shared_info_frame(), &domain.vcpu) {
                return Some(self.deliver_upcall(frame));
            }
        }
        self.rearm();
        frame.prepare_return().map(Step::Resume)
    }

    /// The return [`Self::return_now`] refused: its domain is killed, and the next one
    /// runs (or is refused in turn).
    #[cold]
    #[inline(never)]
    fn refuse_return(&mut self, frame: &mut TrapFrame) -> Step {
        loop {
            self.kill_current(&format!("return to non-canonical rip {:#x} refused (XSA-7 guard)", frame.rip));
            if let Err(step) = self.next_frame(Reason::Ended, false, frame) {
                return step;
            }
            if let Some(step) = self.return_now(frame) {
                return step;
            }
        }
    }

    /// Kills the running domain with `reason` and continues with the next one.
    pub(crate) fn kill_and_continue(&mut self, frame: &mut TrapFrame, reason: &str) -> Step {
        self.kill_current(reason);
        self.continue_after_end(frame)
    }

    /// Runs whoever is next after the current domain ended.
    pub(crate) fn continue_after_end(&mut self, frame: &mut TrapFrame) -> Step {
        self.return_to_next(Reason::Ended, false, frame)
    }

    /// Puts whoever the scheduler picks for `reason` into `frame` ([`Self::next_frame`])
    /// and returns to it.
    fn return_to_next(&mut self, reason: Reason, idle: bool, frame: &mut TrapFrame) -> Step {
        match self.next_frame(reason, idle, frame) {
            Ok(()) => self.finish_return(frame),
            Err(step) => step,
        }
    }

    /// Saves the running domain's state and returns to whoever the scheduler picks for
    /// `reason` (possibly the same domain, for a yield or preemption with nobody waiting).
    pub(crate) fn switch_away(&mut self, frame: &mut TrapFrame, reason: Reason) -> Step {
        self.domains[self.current].state = *frame;
        self.return_to_next(reason, false, frame)
    }

    /// Continues after the machine halted for [`Step::Idle`]: `frame` becomes the state
    /// of whoever runs now.
    pub fn resume_after_idle(&mut self, frame: &mut TrapFrame) -> Step {
        self.return_to_next(Reason::Yield, true, frame)
    }

    /// Moves the running vCPU to `mode`: its root and GS base follow. Inline: every
    /// bounce and every `iret` comes here (two places), most without a change of mode.
    #[inline(always)]
    pub(super) fn change_mode(&mut self, mode: Mode) {
        let domain = &mut self.domains[self.current];
        if domain.vcpu.mode == mode {
            return;
        }
        domain.vcpu.mode = mode;
        if let Some(root) = domain.current_root() {
            self.load_root(root);
        }
        self.load_segment_bases();
    }

    /// Delivers `event` to the running domain's guest kernel (SPEC.md §11.4), or kills
    /// the domain if it cannot be delivered — no handler, no stack, a stack it cannot
    /// write: the paravirtual triple fault.
    pub(super) fn bounce_event(&mut self, frame: &mut TrapFrame, event: Event) -> Step {
        if self.trace.is_some() {
            return self.bounce_traced_event(frame, event);
        }
        self.bounce::<false>(frame, event)
    }

    /// [`Self::bounce_event`] while some domain is traced (SPEC.md §22).
    #[cold]
    #[inline(never)]
    fn bounce_traced_event(&mut self, frame: &mut TrapFrame, event: Event) -> Step {
        self.bounce::<true>(frame, event)
    }

    /// The bounce itself; `TRACED` records it (for a traced domain), delivered or not.
    /// One body for both, so the untraced one is exactly the bounce.
    #[inline(always)]
    fn bounce<const TRACED: bool>(&mut self, frame: &mut TrapFrame, event: Event) -> Step {
        let traced = if TRACED { Some((self.platform.read_tsc(), *frame)) } else { None };
        let domain = &self.domains[self.current];
        let Some(memory) = domain.memory.as_ref() else {
            unreachable!("the running domain always has memory");
        };
        let shared = memory.shared_info_frame();
        // The frame's IF is the virtual interrupt flag: !upcall_mask (SPEC.md §18.3).
        let masked = upcall::upcall_mask(&self.memory, shared);
        let delivery = match bounce::deliver(&domain.vcpu, frame, event, masked) {
            Ok(delivery) => delivery,
            Err(failure) => return self.bounce_failed(frame, &event, BounceFailure::Refused(failure), traced),
        };
        let written = guest_memory::copy_to_guest(
            &mut self.memory,
            memory.kernel_space(),
            delivery.frame_address,
            delivery.frame.as_bytes(),
        );
        if let Err(fault) = written {
            let failure =
                BounceFailure::NotWritable { vector: delivery.vector, address: delivery.frame_address, fault };
            return self.bounce_failed(frame, &event, failure, traced);
        }
        // Only a real #PF has a faulting address (a granted `int 14` does not).
        if matches!(event, Event::Exception { vector: vector::PAGE_FAULT, .. }) {
            self.memory.write(shared, cr2_offset(0), &delivery.frame.fault_address.0.to_le_bytes());
        }
        if delivery.masks_events {
            upcall::set_upcall_mask(&mut self.memory, shared, true);
        }
        delivery.resume.apply(frame);
        self.change_mode(Mode::Kernel);
        if let Some((start, interrupted)) = traced {
            self.record_bounce(&interrupted, &event, start, true);
        }
        self.finish_return_inline(frame)
    }

    /// A bounce that cannot be delivered: the domain is killed with the reason (recorded
    /// first when traced, `traced` holding the start TSC and the interrupted state).
    #[cold]
    #[inline(never)]
    fn bounce_failed(
        &mut self,
        frame: &mut TrapFrame,
        event: &Event,
        failure: BounceFailure,
        traced: Option<(u64, TrapFrame)>,
    ) -> Step {
        let reason = match failure {
            BounceFailure::Refused(failure) => format!("{}: {failure}", describe(frame, event)),
            BounceFailure::NotWritable { vector, address, fault } => format!(
                "{}: fault delivering {}: guest-kernel stack {address:#x} is not writable ({fault})",
                describe(frame, event),
                vector::name(vector),
            ),
        };
        if let Some((start, interrupted)) = traced {
            self.record_bounce(&interrupted, event, start, false);
        }
        self.kill_and_continue(frame, &reason)
    }

    /// Records a bounce of `event` that interrupted `interrupted`, started at TSC `start`,
    /// for the running domain if it is traced.
    fn record_bounce(&mut self, interrupted: &TrapFrame, event: &Event, start: u64, delivered: bool) {
        let end = self.platform.read_tsc();
        let rip = interrupted.rip;
        let (kind, number, arguments) = match *event {
            Event::Exception { vector, error_code, fault_address } => {
                (trace_kind::BOUNCE, u64::from(vector), [error_code, fault_address, rip, 0, 0, 0])
            }
            Event::SoftwareInterrupt { vector, .. } => (trace_kind::BOUNCE, u64::from(vector), [0, 0, rip, 0, 0, 0]),
            Event::Syscall => {
                (trace_kind::BOUNCE, SYSCALL_VECTOR, [0, 0, rip, interrupted.rax, interrupted.rdi, interrupted.rsi])
            }
            Event::Upcall => (trace_kind::UPCALL, EVENT_VECTOR, [0, 0, rip, 0, 0, 0]),
        };
        let index = self.current;
        let record = TraceRecord {
            kind,
            flags: trace_flags::RESULT,
            domain: self.domains[index].id,
            number,
            arguments,
            result: if delivered { 0 } else { -1 },
            tsc: start,
            tsc_end: end,
            ..TraceRecord::default()
        };
        self.trace_record(index, record);
    }

    /// Delivers the running domain's pending event to its event callback (SPEC.md §18.4).
    pub(crate) fn deliver_upcall(&mut self, frame: &mut TrapFrame) -> Step {
        // The handler may read the time first thing: a timer's upcall must not find the
        // clock short of its deadline (SPEC.md §18.4 step 1, §19.4).
        if let Some(shared) = self.domains[self.current].memory.as_ref().map(DomainMemory::shared_info_frame) {
            self.write_time_info(shared);
        }
        self.bounce_event(frame, Event::Upcall)
    }
}

/// Why a bounce was not delivered.
enum BounceFailure {
    /// The event has no handler or no stack (the policy's answer).
    Refused(bounce::DeliveryFailure),
    /// The frame for `vector` could not be written at `address`.
    NotWritable { vector: u64, address: u64, fault: GuestFault },
}

/// One line naming what happened, for kill reports.
fn describe(frame: &TrapFrame, event: &Event) -> String {
    match *event {
        Event::Exception { vector, error_code, fault_address } => format!(
            "{} at rip {:#x} error {:#x} cr2 {:#x}",
            vector::name(u64::from(vector)),
            frame.rip,
            error_code,
            fault_address
        ),
        Event::SoftwareInterrupt { vector, .. } => format!("int {:#x} at rip {:#x}", vector, frame.rip),
        Event::Syscall => format!("guest-user syscall at rip {:#x}", frame.rip),
        Event::Upcall => format!("event upcall at rip {:#x}", frame.rip),
    }
}
