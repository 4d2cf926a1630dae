//! Event channels and the scheduler calls around them (public/event_channel.h,
//! public/sched.h, public/vcpu.h), two-level ABI: pending and mask bits in shared info.

use crate::xen::{
    self, DOMID_SELF, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_SET_TIMER_OP, HYPERVISOR_VCPU_OP,
    SCHEDOP_BLOCK, SCHEDOP_POLL,
};

const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
const EVTCHNOP_BIND_VIRQ: u64 = 1;
const EVTCHNOP_SEND: u64 = 4;
const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
pub const VIRQ_TIMER: u32 = 0;

#[repr(C)]
struct AllocUnbound {
    dom: u16,
    remote_dom: u16,
    port: u32,
}

#[repr(C)]
struct BindInterdomain {
    remote_dom: u16,
    remote_port: u32,
    local_port: u32,
}

#[repr(C)]
struct BindVirq {
    virq: u32,
    vcpu: u32,
    port: u32,
}

#[repr(C)]
struct Poll {
    ports: u64,
    count: u32,
    timeout: u64,
}

fn event_channel_op<T>(command: u64, argument: &mut T) -> Result<(), i64> {
    xen::status(xen::hypercall(HYPERVISOR_EVENT_CHANNEL_OP, command, argument as *mut T as u64, 0))
}

/// A fresh port of this domain that this domain itself may bind to.
pub fn alloc_unbound_to_self() -> Result<u32, i64> {
    let mut argument = AllocUnbound { dom: DOMID_SELF, remote_dom: DOMID_SELF, port: 0 };
    event_channel_op(EVTCHNOP_ALLOC_UNBOUND, &mut argument).map(|()| argument.port)
}

/// A second port of this domain, connected to its own port `remote`: loopback.
pub fn bind_to_self(remote: u32) -> Result<u32, i64> {
    let mut argument = BindInterdomain { remote_dom: DOMID_SELF, remote_port: remote, local_port: 0 };
    event_channel_op(EVTCHNOP_BIND_INTERDOMAIN, &mut argument).map(|()| argument.local_port)
}

/// A port for vCPU 0's `virq`.
pub fn bind_virq(virq: u32) -> Result<u32, i64> {
    let mut argument = BindVirq { virq, vcpu: 0, port: 0 };
    event_channel_op(EVTCHNOP_BIND_VIRQ, &mut argument).map(|()| argument.port)
}

/// Sends an event to the other end of `port`.
#[inline(always)]
pub fn send(port: u32) -> Result<(), i64> {
    let mut port = port;
    event_channel_op(EVTCHNOP_SEND, &mut port)
}

/// Returns once `port` is pending (no timeout).
#[inline(always)]
pub fn poll(port: u32) -> Result<(), i64> {
    let ports = [port];
    let argument = Poll { ports: ports.as_ptr() as u64, count: 1, timeout: 0 };
    xen::status(xen::hypercall(HYPERVISOR_SCHED_OP, SCHEDOP_POLL, core::ptr::addr_of!(argument) as u64, 0))
}

/// Stops vCPU 0's periodic VIRQ_TIMER, so only the one-shot timer fires.
pub fn stop_periodic_timer() -> Result<(), i64> {
    xen::status(xen::hypercall(HYPERVISOR_VCPU_OP, VCPUOP_STOP_PERIODIC_TIMER, 0, 0))
}

/// Arms the one-shot timer for system time `deadline` (ns).
pub fn set_timer(deadline: u64) -> Result<(), i64> {
    xen::status(xen::hypercall(HYPERVISOR_SET_TIMER_OP, deadline, 0, 0))
}

/// Unmasks upcalls and sleeps until an event is pending (at once if one is).
pub fn block() -> Result<(), i64> {
    xen::status(xen::hypercall(HYPERVISOR_SCHED_OP, SCHEDOP_BLOCK, 0, 0))
}
