//! Event channels, virtual interrupts and timers (SPEC.md §17–§19): the numbers of
//! `event_channel_op`, `set_callbacks`, `set_timer_op` and the blocking `sched_op`
//! commands. The bitmaps and the upcall flags live in the shared-info page
//! ([`crate::shared_info`]).

/// Port numbers are `1..PORTS_MAX`, so a domain has at most `PORTS_MAX - 1` (1023) open
/// at once (port 0 is never allocated, so 0 can mean "none"). The shared-info bitmaps have room for
/// [`crate::shared_info::EVENT_PORTS`] ports; this version uses the first `PORTS_MAX`.
pub const PORTS_MAX: u64 = 1024;

/// Pseudo-vector of an event upcall in [`crate::trap::ExceptionFrame::vector`].
pub const EVENT_VECTOR: u64 = 0x101;

/// Sub-commands of `event_channel_op(cmd, a, b)` (RDI).
pub mod event_cmd {
    /// `ALLOC_UNBOUND(remote_domain)`: a new port only `remote_domain` may bind
    /// (`DOMAIN_SELF` = this domain); returns the port.
    pub const ALLOC_UNBOUND: u64 = 0;
    /// `BIND_INTERDOMAIN(remote_domain, remote_port)`: connects a new local port to the
    /// remote domain's unbound port that names this domain; returns the local port.
    pub const BIND_INTERDOMAIN: u64 = 1;
    /// `BIND_VIRQ(virq)`: a port that receives the virtual interrupt; returns the port.
    pub const BIND_VIRQ: u64 = 2;
    /// `BIND_IPI()`: a port this domain signals itself through; returns the port.
    pub const BIND_IPI: u64 = 3;
    /// `CLOSE(port)`: closes the port (the peer's end becomes unbound); returns 0.
    pub const CLOSE: u64 = 4;
    /// `SEND(port)`: marks the peer's (or own, for IPI) port pending; returns 0.
    pub const SEND: u64 = 5;
    /// `STATUS(port)`: returns a [`super::status`] state packed as `state | remote_domain << 8 |
    /// remote_port << 32` (virq number in place of remote_port for VIRQ ports).
    pub const STATUS: u64 = 6;
    /// `UNMASK(port)`: clears the mask bit and re-delivers the event if it is pending;
    /// returns 0.
    pub const UNMASK: u64 = 7;
}

/// `remote_domain` meaning the calling domain.
pub const DOMAIN_SELF: u64 = 0x7ff0;

/// Port states returned by `STATUS` (low 8 bits).
pub mod status {
    /// Not open.
    pub const CLOSED: u64 = 0;
    /// Allocated, waiting for the named domain to bind.
    pub const UNBOUND: u64 = 1;
    /// Connected to a port of another (or the same) domain.
    pub const INTERDOMAIN: u64 = 2;
    /// Bound to a virtual interrupt.
    pub const VIRQ: u64 = 4;
    /// Bound for self-notification.
    pub const IPI: u64 = 5;
}

/// Virtual interrupts (`BIND_VIRQ`).
pub mod virq {
    /// The one-shot timer of `set_timer_op` expired.
    pub const TIMER: u64 = 0;
    /// Debug request (raised by the hypervisor on the console escape `d`).
    pub const DEBUG: u64 = 1;
    /// Console input is waiting for `console_io(READ)`.
    pub const CONSOLE: u64 = 2;
    /// Number of virtual interrupts.
    pub const COUNT: u64 = 3;
}

/// Unpacks a `STATUS` result into (state, remote domain, remote port or virq).
pub const fn split_status(value: u64) -> (u64, u64, u64) {
    (value & 0xff, (value >> 8) & 0xff_ffff, value >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_splits_at_the_spec_s_bit_boundaries() {
        // SPEC.md §17: state bits 0-7, remote_domain bits 8-31, remote bits 32-63.
        let packed = status::INTERDOMAIN | 0xab_cdef << 8 | 0x1234_5678 << 32;
        assert_eq!(split_status(packed), (status::INTERDOMAIN, 0xab_cdef, 0x1234_5678));
        assert_eq!(split_status(u64::MAX), (0xff, 0xff_ffff, 0xffff_ffff));
        assert_eq!(split_status(0x1ff), (0xff, 1, 0));
        assert_eq!(split_status(1 << 32), (0, 0, 1));
    }
}
