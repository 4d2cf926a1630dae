//! Event channels: every live domain's port table and `event_channel_op` (hypercall-abi
//! `event`). This module owns only the bookkeeping; the bits a raise sets live in the
//! receiving domain's shared-info page, which the system reaches through [`Notify`]
//! (normally with [`crate::event::upcall`]).
//!
//! Ports are `1..PORTS_MAX` per domain, allocated lowest first. A connection is stored at
//! both ends (each end names the other), so closing either end, or the death of either
//! domain, finds the other in constant time. Every guest value is checked before anything
//! changes: a refused operation leaves every table as it was.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use hypercall_abi::event::{event_cmd, status, virq, DOMAIN_SELF, PORTS_MAX};
use hypercall_abi::Errno;

/// Ports a domain may use: `1..PORTS_MAX`.
const PORT_LIMIT: usize = PORTS_MAX as usize;
/// Virtual interrupts a domain may bind.
const VIRQS: usize = virq::COUNT as usize;
/// `STATUS` keeps 24 bits of the remote domain (hypercall-abi `split_status`).
const STATUS_DOMAIN_MASK: u64 = 0xff_ffff;

/// What the system does for the event-channel code: set bits in a domain's shared-info
/// page and make a sleeping domain runnable.
pub trait Notify {
    /// Marks `port` of `domain` pending (`upcall::raise`) and wakes `domain` if it is
    /// blocked and the raise set `upcall_pending`, or if it is polling and `port` is one
    /// of its polled ports.
    fn raise(&mut self, domain: u32, port: u32);
    /// `UNMASK`: clears the port's mask bit and re-announces it if pending
    /// (`upcall::unmask`); the caller is running, so delivery happens on its return.
    fn unmask(&mut self, domain: u32, port: u32);
    /// `port` of `domain` was closed: clear its pending and mask bits
    /// (`upcall::clear_port`).
    fn clear(&mut self, domain: u32, port: u32);
    /// Makes `domain` runnable if it is blocked or polling (so it notices a peer closing
    /// or dying); a running domain is left alone.
    fn wake(&mut self, domain: u32);
}

/// The state of one port.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum PortState {
    /// Free.
    #[default]
    Closed,
    /// Allocated by `ALLOC_UNBOUND`; only domain `remote` may bind it. Also what an
    /// interdomain end becomes when the other end closes (naming the closer).
    Unbound { remote: u32 },
    /// Connected to `remote_port` of `remote_domain` (which may be this domain).
    Interdomain { remote_domain: u32, remote_port: u32 },
    /// Receives virtual interrupt `virq` (< `virq::COUNT`).
    Virq(u32),
    /// Signalled by this domain's own `SEND`.
    Ipi,
}

/// One domain's ports. `ports[0]` is never used (port 0 means "none"); the table grows
/// only as far as the highest port ever open, at most `PORTS_MAX` entries.
#[derive(Clone, Debug)]
struct DomainPorts {
    ports: Vec<PortState>,
    virqs: [Option<u32>; VIRQS],
    open: usize,
}

impl DomainPorts {
    fn new() -> Self {
        Self { ports: alloc::vec![PortState::Closed], virqs: [None; VIRQS], open: 0 }
    }

    fn state(&self, port: u32) -> PortState {
        self.ports.get(port as usize).copied().unwrap_or_default()
    }

    /// The lowest free port, growing the table if every existing entry is taken.
    fn free_port(&mut self) -> Result<u32, Errno> {
        if let Some(index) = self.ports.iter().skip(1).position(|&state| state == PortState::Closed) {
            return Ok(index as u32 + 1);
        }
        if self.ports.len() >= PORT_LIMIT {
            return Err(Errno::ENOSPC);
        }
        // Out of hypervisor heap is the guest's problem only as an error, never a panic.
        self.ports.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        self.ports.push(PortState::Closed);
        Ok(self.ports.len() as u32 - 1)
    }

    /// Puts `state` (not `Closed`) into `port`, which must be free and inside the table.
    fn open(&mut self, port: u32, state: PortState) {
        if let Some(slot) = self.ports.get_mut(port as usize) {
            if *slot == PortState::Closed {
                self.open += 1;
            }
            *slot = state;
        }
    }

    fn set(&mut self, port: u32, state: PortState) {
        if let Some(slot) = self.ports.get_mut(port as usize) {
            *slot = state;
        }
    }

    /// Frees `port` and its virq slot; returns what it was.
    fn close(&mut self, port: u32) -> PortState {
        let Some(slot) = self.ports.get_mut(port as usize) else {
            return PortState::Closed;
        };
        let old = core::mem::take(slot);
        if old != PortState::Closed {
            self.open -= 1;
        }
        if let PortState::Virq(virq) = old {
            if let Some(entry) = self.virqs.get_mut(virq as usize) {
                *entry = None;
            }
        }
        old
    }
}

/// Every live domain's ports.
#[derive(Clone, Debug, Default)]
pub struct EventChannels {
    domains: BTreeMap<u32, DomainPorts>,
}

/// A guest's port argument as a port number, or -EINVAL outside `1..PORTS_MAX`.
fn port_argument(value: u64) -> Result<u32, Errno> {
    if value == 0 || value >= PORTS_MAX {
        return Err(Errno::EINVAL);
    }
    Ok(value as u32)
}

fn result(value: Result<u64, Errno>) -> i64 {
    match value {
        // Ports and packed statuses are far below 2^63.
        Ok(value) => value as i64,
        Err(errno) => errno.to_return(),
    }
}

impl EventChannels {
    /// No domains.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `domain` live with no ports open (done at domain creation). Adding a live
    /// domain again changes nothing.
    pub fn add_domain(&mut self, domain: u32) {
        self.domains.entry(domain).or_insert_with(DomainPorts::new);
    }

    /// Whether `domain` is live here.
    pub fn has_domain(&self, domain: u32) -> bool {
        self.domains.contains_key(&domain)
    }

    /// Ends `domain`: every port of it is closed. The other end of each of its
    /// interdomain connections becomes `Unbound` naming `domain`, and that peer is woken so
    /// a blocked or polling waiter notices. The dead domain's own shared-info bits are not
    /// touched (`Notify::clear` is not called for it): its page is going away. Unbound
    /// ports of other domains that name `domain` stay as they are, bindable by nobody.
    /// Returns the number of ports that were open.
    pub fn remove_domain(&mut self, domain: u32, notify: &mut impl Notify) -> usize {
        let Some(dead) = self.domains.remove(&domain) else {
            return 0;
        };
        for state in dead.ports.iter() {
            if let PortState::Interdomain { remote_domain, remote_port } = *state {
                // A loopback connection's other end died with the table.
                if remote_domain == domain {
                    continue;
                }
                if let Some(peer) = self.domains.get_mut(&remote_domain) {
                    peer.set(remote_port, PortState::Unbound { remote: domain });
                    notify.wake(remote_domain);
                }
            }
        }
        dead.open
    }

    /// Open ports over all live domains (the exit summary's "ports open").
    pub fn open_ports(&self) -> usize {
        self.domains.values().map(|ports| ports.open).sum()
    }

    /// Open ports of `domain` (0 if it is not live).
    pub fn domain_open_ports(&self, domain: u32) -> usize {
        self.domains.get(&domain).map_or(0, |ports| ports.open)
    }

    /// The state of `port` of `domain` (`Closed` for anything not open or not live).
    pub fn port_state(&self, domain: u32, port: u32) -> PortState {
        self.domains.get(&domain).map_or(PortState::Closed, |ports| ports.state(port))
    }

    /// The port `domain` bound to `virq`, if any.
    pub fn virq_port(&self, domain: u32, virq: u64) -> Option<u32> {
        let ports = self.domains.get(&domain)?;
        *ports.virqs.get(usize::try_from(virq).ok()?)?
    }

    /// Raises virtual interrupt `virq` in `domain` (timer expiry, console input) if the
    /// domain bound it; returns whether a port was raised.
    pub fn raise_virq(&mut self, domain: u32, virq: u64, notify: &mut impl Notify) -> bool {
        match self.virq_port(domain, virq) {
            Some(port) => {
                notify.raise(domain, port);
                true
            }
            None => false,
        }
    }

    /// `event_channel_op(cmd, a, b)` from `caller` with the hypercall's arguments (RDI,
    /// RSI, RDX, ...). Returns the hypercall result: a port, a packed status, 0, or
    /// `-errno`.
    pub fn op(&mut self, caller: u32, arguments: &[u64; 6], notify: &mut impl Notify) -> i64 {
        let [command, a, b, ..] = *arguments;
        // The hot one first, with its one lookup of the caller's ports.
        if command == event_cmd::SEND {
            return result(self.send(caller, a, notify));
        }
        if !self.has_domain(caller) {
            return Errno::ESRCH.to_return();
        }
        let allocated = match command {
            event_cmd::ALLOC_UNBOUND => self.alloc_unbound(caller, a),
            event_cmd::BIND_INTERDOMAIN => self.bind_interdomain(caller, a, b),
            event_cmd::BIND_VIRQ => self.bind_virq(caller, a),
            event_cmd::BIND_IPI => self.allocate(caller, PortState::Ipi),
            event_cmd::CLOSE => return result(self.close(caller, a, notify)),
            event_cmd::STATUS => return result(self.status(caller, a)),
            event_cmd::UNMASK => return result(self.unmask(caller, a, notify)),
            _ => return Errno::EINVAL.to_return(),
        };
        // A new port starts with its pending and mask bits clear, whatever the guest left
        // in them for that number while it was closed (SPEC.md §17.2).
        if let Ok(port) = allocated {
            notify.clear(caller, port as u32);
        }
        result(allocated)
    }

    fn table(&mut self, domain: u32) -> Result<&mut DomainPorts, Errno> {
        self.domains.get_mut(&domain).ok_or(Errno::ESRCH)
    }

    /// A live domain named by a guest argument (`DOMAIN_SELF` = `caller`), or -ESRCH.
    fn live_domain(&self, caller: u32, value: u64) -> Result<u32, Errno> {
        if value == DOMAIN_SELF {
            return Ok(caller);
        }
        u32::try_from(value).ok().filter(|domain| self.has_domain(*domain)).ok_or(Errno::ESRCH)
    }

    /// An open port of `caller` named by a guest argument, or -EINVAL.
    fn open_port(&self, caller: u32, value: u64) -> Result<(u32, PortState), Errno> {
        let port = port_argument(value)?;
        match self.port_state(caller, port) {
            PortState::Closed => Err(Errno::EINVAL),
            state => Ok((port, state)),
        }
    }

    fn allocate(&mut self, caller: u32, state: PortState) -> Result<u64, Errno> {
        let ports = self.table(caller)?;
        let port = ports.free_port()?;
        ports.open(port, state);
        Ok(u64::from(port))
    }

    fn alloc_unbound(&mut self, caller: u32, remote: u64) -> Result<u64, Errno> {
        let remote = self.live_domain(caller, remote)?;
        self.allocate(caller, PortState::Unbound { remote })
    }

    fn bind_interdomain(&mut self, caller: u32, remote: u64, remote_port: u64) -> Result<u64, Errno> {
        let remote_domain = self.live_domain(caller, remote)?;
        let remote_port = port_argument(remote_port)?;
        match self.port_state(remote_domain, remote_port) {
            PortState::Unbound { remote } if remote == caller => {}
            PortState::Unbound { .. } => return Err(Errno::EPERM),
            _ => return Err(Errno::EINVAL),
        }
        // The local port first: if there is none, the remote end stays unbound.
        let port = self.table(caller)?.free_port()?;
        self.table(caller)?.open(port, PortState::Interdomain { remote_domain, remote_port });
        self.table(remote_domain)?
            .set(remote_port, PortState::Interdomain { remote_domain: caller, remote_port: port });
        Ok(u64::from(port))
    }

    fn bind_virq(&mut self, caller: u32, virq: u64) -> Result<u64, Errno> {
        if virq >= virq::COUNT {
            return Err(Errno::EINVAL);
        }
        let index = virq as usize;
        let ports = self.table(caller)?;
        if ports.virqs[index].is_some() {
            return Err(Errno::EEXIST);
        }
        let port = ports.free_port()?;
        ports.open(port, PortState::Virq(virq as u32));
        ports.virqs[index] = Some(port);
        Ok(u64::from(port))
    }

    fn close(&mut self, caller: u32, port: u64, notify: &mut impl Notify) -> Result<u64, Errno> {
        let (port, _) = self.open_port(caller, port)?;
        let old = self.table(caller)?.close(port);
        if let PortState::Interdomain { remote_domain, remote_port } = old {
            if let Ok(peer) = self.table(remote_domain) {
                peer.set(remote_port, PortState::Unbound { remote: caller });
                notify.wake(remote_domain);
            }
        }
        notify.clear(caller, port);
        Ok(0)
    }

    /// SEND: -ESRCH for a caller without ports (as every command), then the port as
    /// [`Self::open_port`] checks it.
    fn send(&mut self, caller: u32, port: u64, notify: &mut impl Notify) -> Result<u64, Errno> {
        let ports = self.domains.get(&caller).ok_or(Errno::ESRCH)?;
        let port = port_argument(port)?;
        match ports.state(port) {
            PortState::Interdomain { remote_domain, remote_port } => notify.raise(remote_domain, remote_port),
            PortState::Ipi => notify.raise(caller, port),
            // Unbound ports have nobody to signal; virq ports are raised by the
            // hypervisor only.
            _ => return Err(Errno::EINVAL),
        }
        Ok(0)
    }

    fn status(&self, caller: u32, port: u64) -> Result<u64, Errno> {
        let port = port_argument(port)?;
        let pack = |state: u64, domain: u32, detail: u32| {
            state | (u64::from(domain) & STATUS_DOMAIN_MASK) << 8 | u64::from(detail) << 32
        };
        Ok(match self.port_state(caller, port) {
            PortState::Closed => status::CLOSED,
            PortState::Unbound { remote } => pack(status::UNBOUND, remote, 0),
            PortState::Interdomain { remote_domain, remote_port } => {
                pack(status::INTERDOMAIN, remote_domain, remote_port)
            }
            PortState::Virq(virq) => pack(status::VIRQ, 0, virq),
            PortState::Ipi => status::IPI,
        })
    }

    fn unmask(&mut self, caller: u32, port: u64, notify: &mut impl Notify) -> Result<u64, Errno> {
        let (port, _) = self.open_port(caller, port)?;
        notify.unmask(caller, port);
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::event::split_status;
    use std::collections::{BTreeSet, HashSet};

    /// Records what the system was asked to do, and keeps pending bits like the real
    /// shared-info page would (mask ignored: only pending matters here).
    #[derive(Default)]
    struct Recorder {
        raised: Vec<(u32, u32)>,
        unmasked: Vec<(u32, u32)>,
        cleared: Vec<(u32, u32)>,
        woken: Vec<u32>,
        pending: HashSet<(u32, u32)>,
    }

    impl Notify for Recorder {
        fn raise(&mut self, domain: u32, port: u32) {
            self.raised.push((domain, port));
            self.pending.insert((domain, port));
        }
        fn unmask(&mut self, domain: u32, port: u32) {
            self.unmasked.push((domain, port));
        }
        fn clear(&mut self, domain: u32, port: u32) {
            self.cleared.push((domain, port));
            self.pending.remove(&(domain, port));
        }
        fn wake(&mut self, domain: u32) {
            self.woken.push(domain);
        }
    }

    const EINVAL: i64 = -22;
    const EPERM: i64 = -1;
    const ESRCH: i64 = -3;
    const EEXIST: i64 = -17;
    const ENOSPC: i64 = -28;

    fn setup() -> (EventChannels, Recorder) {
        let mut channels = EventChannels::new();
        for domain in [1, 2, 3] {
            channels.add_domain(domain);
        }
        (channels, Recorder::default())
    }

    fn op(channels: &mut EventChannels, notify: &mut Recorder, caller: u32, command: u64, a: u64, b: u64) -> i64 {
        channels.op(caller, &[command, a, b, 0xdead, 0xbeef, u64::MAX], notify)
    }

    /// Connects a port of `left` to a port of `right`; returns (left port, right port).
    fn connect(channels: &mut EventChannels, notify: &mut Recorder, left: u32, right: u32) -> (u32, u32) {
        let unbound = op(channels, notify, left, event_cmd::ALLOC_UNBOUND, u64::from(right), 0);
        assert!(unbound > 0, "alloc_unbound {unbound}");
        let bound = op(channels, notify, right, event_cmd::BIND_INTERDOMAIN, u64::from(left), unbound as u64);
        assert!(bound > 0, "bind_interdomain {bound}");
        (unbound as u32, bound as u32)
    }

    /// Counts open ports the slow way, to check the counters.
    fn recount(channels: &EventChannels) -> usize {
        channels
            .domains
            .values()
            .map(|ports| ports.ports.iter().filter(|&&state| state != PortState::Closed).count())
            .sum()
    }

    /// Both ends of every connection name each other.
    fn assert_symmetric(channels: &EventChannels) {
        for (&domain, ports) in &channels.domains {
            for (port, state) in ports.ports.iter().enumerate() {
                if let PortState::Interdomain { remote_domain, remote_port } = *state {
                    assert_eq!(
                        channels.port_state(remote_domain, remote_port),
                        PortState::Interdomain { remote_domain: domain, remote_port: port as u32 },
                        "d{domain} port {port}"
                    );
                }
            }
        }
        assert_eq!(channels.open_ports(), recount(channels));
    }

    #[test]
    fn alloc_unbound_and_status() {
        let (mut channels, mut notify) = setup();
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, 2, 0), 1, "lowest port first");
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, DOMAIN_SELF, 0), 2);
        assert_eq!(channels.port_state(1, 2), PortState::Unbound { remote: 1 });
        let packed = op(&mut channels, &mut notify, 1, event_cmd::STATUS, 1, 0) as u64;
        assert_eq!(split_status(packed), (status::UNBOUND, 2, 0));
        for missing in [0, 4, 99, 0x7fef, 0x7ff1, 1 << 32, u64::MAX] {
            assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, missing, 0), ESRCH, "{missing:#x}");
        }
        assert_eq!(channels.open_ports(), 2);
        assert!(notify.raised.is_empty() && notify.woken.is_empty());
    }

    #[test]
    fn bind_interdomain_connects_both_ends() {
        let (mut channels, mut notify) = setup();
        // Give domain 2 a busy port 1 so the local port differs from the remote one.
        op(&mut channels, &mut notify, 2, event_cmd::BIND_IPI, 0, 0);
        let (left, right) = connect(&mut channels, &mut notify, 1, 2);
        assert_eq!((left, right), (1, 2));
        assert_eq!(channels.port_state(1, 1), PortState::Interdomain { remote_domain: 2, remote_port: 2 });
        assert_eq!(channels.port_state(2, 2), PortState::Interdomain { remote_domain: 1, remote_port: 1 });
        let packed = op(&mut channels, &mut notify, 2, event_cmd::STATUS, 2, 0) as u64;
        assert_eq!(split_status(packed), (status::INTERDOMAIN, 1, 1));
        assert_eq!(packed, 2 | 1 << 8 | 1 << 32);
        assert_symmetric(&channels);
        // Both directions send to the other end.
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::SEND, 1, 0), 0);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::SEND, 2, 0), 0);
        assert_eq!(notify.raised, [(2, 2), (1, 1)]);
    }

    #[test]
    fn bind_interdomain_refusals() {
        let (mut channels, mut notify) = setup();
        let for_two = op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, 2, 0) as u64;
        let ipi = op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0) as u64;
        let before = channels.open_ports();
        // Domain 3 is not the one named: -EPERM.
        assert_eq!(op(&mut channels, &mut notify, 3, event_cmd::BIND_INTERDOMAIN, 1, for_two), EPERM);
        // Not an unbound port, closed, out of range.
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, ipi), EINVAL);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, 77), EINVAL);
        for bad in [0, PORTS_MAX, PORTS_MAX + 1, u64::MAX] {
            assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, bad), EINVAL, "{bad}");
        }
        // Dead or unknown remote domain.
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 9, for_two), ESRCH);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, u64::MAX, for_two), ESRCH);
        // DOMAIN_SELF means the caller, whose port `for_two` is not.
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, DOMAIN_SELF, for_two), EINVAL);
        assert_eq!(channels.open_ports(), before, "nothing allocated by a refusal");
        assert_eq!(channels.port_state(1, for_two as u32), PortState::Unbound { remote: 2 });
        // Binding twice: the second finds the port already connected.
        assert!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, for_two) > 0);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, for_two), EINVAL);
        assert_symmetric(&channels);
    }

    #[test]
    fn loopback_connection() {
        let (mut channels, mut notify) = setup();
        let unbound = op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, DOMAIN_SELF, 0) as u64;
        let bound = op(&mut channels, &mut notify, 1, event_cmd::BIND_INTERDOMAIN, DOMAIN_SELF, unbound);
        assert_eq!(bound, 2);
        assert_symmetric(&channels);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::SEND, 2, 0), 0);
        assert_eq!(notify.raised, [(1, 1)]);
        // Closing one end leaves the other unbound for the same domain.
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::CLOSE, 1, 0), 0);
        assert_eq!(channels.port_state(1, 2), PortState::Unbound { remote: 1 });
        assert_eq!(channels.remove_domain(1, &mut notify), 1);
        assert_eq!(channels.open_ports(), 0);
    }

    #[test]
    fn virq_binding() {
        let (mut channels, mut notify) = setup();
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0), 1);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0), EEXIST);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::CONSOLE, 0), 2);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_VIRQ, virq::TIMER, 0), 1, "per domain");
        for bad in [virq::COUNT, 64, u64::MAX] {
            assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, bad, 0), EINVAL);
        }
        let packed = op(&mut channels, &mut notify, 1, event_cmd::STATUS, 2, 0) as u64;
        assert_eq!(split_status(packed), (status::VIRQ, 0, virq::CONSOLE));
        assert_eq!(channels.virq_port(1, virq::CONSOLE), Some(2));
        assert_eq!(channels.virq_port(1, virq::DEBUG), None);
        assert_eq!(channels.virq_port(1, u64::MAX), None);
        // Guests cannot send on a virq port; the hypervisor raises it.
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::SEND, 1, 0), EINVAL);
        assert!(channels.raise_virq(1, virq::TIMER, &mut notify));
        assert!(!channels.raise_virq(1, virq::DEBUG, &mut notify), "not bound");
        assert!(!channels.raise_virq(9, virq::TIMER, &mut notify), "no such domain");
        assert!(!channels.raise_virq(1, virq::COUNT, &mut notify));
        assert_eq!(notify.raised, [(1, 1)]);
        // Closing frees the virq for a new binding.
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::CLOSE, 1, 0), 0);
        assert_eq!(channels.virq_port(1, virq::TIMER), None);
        assert!(!channels.raise_virq(1, virq::TIMER, &mut notify));
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0), 1);
    }

    #[test]
    fn ipi_sends_to_itself() {
        let (mut channels, mut notify) = setup();
        assert_eq!(op(&mut channels, &mut notify, 3, event_cmd::BIND_IPI, 0, 0), 1);
        assert_eq!(op(&mut channels, &mut notify, 3, event_cmd::STATUS, 1, 0) as u64, status::IPI);
        assert_eq!(op(&mut channels, &mut notify, 3, event_cmd::SEND, 1, 0), 0);
        assert_eq!(notify.raised, [(3, 1)]);
    }

    #[test]
    fn send_refusals() {
        let (mut channels, mut notify) = setup();
        let unbound = op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, 2, 0) as u64;
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::SEND, unbound, 0), EINVAL, "unbound");
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::SEND, 5, 0), EINVAL, "closed");
        for bad in [0, PORTS_MAX, u64::MAX] {
            assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::SEND, bad, 0), EINVAL);
        }
        // Another domain's port number means nothing to the caller.
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::SEND, unbound, 0), EINVAL);
        assert!(notify.raised.is_empty());
    }

    #[test]
    fn unmask_and_unknown_commands() {
        let (mut channels, mut notify) = setup();
        let port = op(&mut channels, &mut notify, 2, event_cmd::BIND_IPI, 0, 0) as u64;
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::UNMASK, port, 0), 0);
        assert_eq!(notify.unmasked, [(2, 1)]);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::UNMASK, 2, 0), EINVAL, "closed");
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::UNMASK, 0, 0), EINVAL);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::UNMASK, PORTS_MAX, 0), EINVAL);
        for command in [8, 99, u64::MAX] {
            assert_eq!(op(&mut channels, &mut notify, 2, command, port, 0), EINVAL);
        }
        // A caller that was never added (or already removed) has no table.
        assert_eq!(op(&mut channels, &mut notify, 7, event_cmd::BIND_IPI, 0, 0), ESRCH);
        assert_eq!(notify.unmasked.len(), 1);
    }

    #[test]
    fn status_of_closed_and_bad_ports() {
        let (mut channels, mut notify) = setup();
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::STATUS, 1, 0) as u64, status::CLOSED);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::STATUS, PORTS_MAX - 1, 0) as u64, status::CLOSED);
        for bad in [0, PORTS_MAX, u64::MAX] {
            assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::STATUS, bad, 0), EINVAL);
        }
    }

    #[test]
    fn new_ports_start_clear() {
        let (mut channels, mut notify) = setup();
        let ipi = op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0) as u32;
        let virq = op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0) as u32;
        let unbound = op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, 2, 0) as u32;
        let bound = op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, u64::from(unbound)) as u32;
        // Only the caller's new port: the remote end of a bind keeps what it has (§17.4).
        assert_eq!(notify.cleared, [(1, ipi), (1, virq), (1, unbound), (2, bound)]);
        // A refused allocation clears nothing.
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0), EEXIST);
        assert_eq!(notify.cleared.len(), 4);
    }

    #[test]
    fn close_rules() {
        let (mut channels, mut notify) = setup();
        let (left, right) = connect(&mut channels, &mut notify, 1, 2);
        // Something pending on the end that is about to close.
        op(&mut channels, &mut notify, 1, event_cmd::SEND, u64::from(left), 0);
        assert!(notify.pending.contains(&(2, right)));
        // Both new ends were cleared when they were allocated.
        assert_eq!(notify.cleared, [(1, left), (2, right)]);
        notify.cleared.clear();
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::CLOSE, u64::from(right), 0), 0);
        assert_eq!(notify.cleared, [(2, right)], "pending and mask bits of the closed port go");
        assert!(!notify.pending.contains(&(2, right)));
        assert_eq!(channels.port_state(2, right), PortState::Closed);
        assert_eq!(channels.port_state(1, left), PortState::Unbound { remote: 2 }, "the peer names the closer");
        assert_eq!(notify.woken, [1], "the peer is woken");
        // Closed twice, never open, out of range.
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::CLOSE, u64::from(right), 0), EINVAL);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::CLOSE, 40, 0), EINVAL);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::CLOSE, 0, 0), EINVAL);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::CLOSE, u64::MAX, 0), EINVAL);
        // The unbound leftover can be re-bound by the domain it names.
        assert_eq!(
            op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, u64::from(left)),
            i64::from(right)
        );
        assert_symmetric(&channels);
        // Closing the unbound/virq/ipi kinds just frees them.
        let ipi = op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0) as u64;
        let woken = notify.woken.len();
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::CLOSE, ipi, 0), 0);
        assert_eq!(notify.woken.len(), woken, "nobody to wake");
        assert_symmetric(&channels);
    }

    #[test]
    fn exhaustion_and_no_leak() {
        let (mut channels, mut notify) = setup();
        let usable = PORTS_MAX - 1;
        for expected in 1..=usable {
            assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0), expected as i64);
        }
        assert_eq!(channels.domain_open_ports(1), usable as usize);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0), ENOSPC);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, 2, 0), ENOSPC);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0), ENOSPC);
        assert_eq!(channels.virq_port(1, virq::TIMER), None, "a refused bind reserves no virq");
        // A full caller cannot bind an interdomain port, and the remote end stays unbound.
        let offered = op(&mut channels, &mut notify, 2, event_cmd::ALLOC_UNBOUND, 1, 0) as u64;
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_INTERDOMAIN, 2, offered), ENOSPC);
        assert_eq!(channels.port_state(2, offered as u32), PortState::Unbound { remote: 1 });
        assert_eq!(channels.open_ports(), usable as usize + 1);
        // Other domains are unaffected.
        assert_eq!(op(&mut channels, &mut notify, 3, event_cmd::BIND_IPI, 0, 0), 1);
        // Freeing ports makes them available again, lowest first, and nothing leaks.
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::CLOSE, 500, 0), 0);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::CLOSE, 7, 0), 0);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0), 7);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0), 500);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0), ENOSPC);
        for port in 1..=usable {
            assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::CLOSE, port, 0), 0);
        }
        assert_eq!(channels.domain_open_ports(1), 0);
        assert_eq!(channels.virq_port(1, virq::TIMER), None);
        assert_symmetric(&channels);
        assert_eq!(channels.open_ports(), 2, "domain 2's offer and domain 3's ipi");
    }

    #[test]
    fn peer_death_unbinds_and_wakes() {
        let (mut channels, mut notify) = setup();
        let (one_to_two, two_from_one) = connect(&mut channels, &mut notify, 1, 2);
        let (three_to_one, one_from_three) = connect(&mut channels, &mut notify, 3, 1);
        let offered_by_two = op(&mut channels, &mut notify, 2, event_cmd::ALLOC_UNBOUND, 1, 0) as u32;
        op(&mut channels, &mut notify, 1, event_cmd::BIND_VIRQ, virq::TIMER, 0);
        op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0);
        op(&mut channels, &mut notify, 1, event_cmd::ALLOC_UNBOUND, 3, 0);
        assert_eq!(channels.domain_open_ports(1), 5);
        let cleared = notify.cleared.len();
        assert_eq!(channels.remove_domain(1, &mut notify), 5);
        assert!(!channels.has_domain(1));
        assert_eq!(channels.port_state(2, two_from_one), PortState::Unbound { remote: 1 });
        assert_eq!(channels.port_state(3, three_to_one), PortState::Unbound { remote: 1 });
        assert_eq!(channels.port_state(2, offered_by_two), PortState::Unbound { remote: 1 }, "offers stay");
        assert_eq!(notify.woken.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([2, 3]));
        assert_eq!(notify.cleared.len(), cleared, "the dead page is not touched");
        assert_eq!(channels.port_state(1, one_to_two), PortState::Closed);
        assert_eq!(channels.port_state(1, one_from_three), PortState::Closed);
        assert_symmetric(&channels);
        // The dead domain can no longer be named or act.
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::BIND_INTERDOMAIN, 1, 1), ESRCH);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::ALLOC_UNBOUND, 1, 0), ESRCH);
        assert_eq!(op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0), ESRCH);
        assert_eq!(op(&mut channels, &mut notify, 2, event_cmd::SEND, u64::from(two_from_one), 0), EINVAL);
        // Survivors close their leftovers: everything is back to zero.
        for (domain, port) in [(2, two_from_one), (3, three_to_one), (2, offered_by_two)] {
            assert_eq!(op(&mut channels, &mut notify, domain, event_cmd::CLOSE, u64::from(port), 0), 0);
        }
        assert_eq!(channels.open_ports(), 0);
        assert_eq!(channels.remove_domain(1, &mut notify), 0, "removing twice is harmless");
        assert_eq!(channels.remove_domain(2, &mut notify), 0);
        assert_eq!(channels.remove_domain(3, &mut notify), 0);
        assert_eq!(channels.open_ports(), 0);
    }

    #[test]
    fn add_domain_twice_keeps_ports() {
        let (mut channels, mut notify) = setup();
        op(&mut channels, &mut notify, 1, event_cmd::BIND_IPI, 0, 0);
        channels.add_domain(1);
        assert_eq!(channels.domain_open_ports(1), 1);
    }

    /// A pseudo-random sequence of operations from several domains never breaks the
    /// invariants (connections symmetric, counters exact, virq slots consistent).
    #[test]
    fn random_operations_keep_invariants() {
        let (mut channels, mut notify) = setup();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let caller = (next() % 4) as u32 + 1; // domain 4 is not live
            let command = next() % 9;
            let a = match next() % 4 {
                0 => next() % 6,
                1 => next() % 40,
                2 => DOMAIN_SELF,
                _ => next(),
            };
            let b = next() % 40;
            op(&mut channels, &mut notify, caller, command, a, b);
            if next() % 500 == 0 {
                let victim = (next() % 3) as u32 + 1;
                channels.remove_domain(victim, &mut notify);
                channels.add_domain(victim);
            }
        }
        assert_symmetric(&channels);
        for (&domain, ports) in &channels.domains {
            for (virq, slot) in ports.virqs.iter().enumerate() {
                if let Some(port) = slot {
                    assert_eq!(channels.port_state(domain, *port), PortState::Virq(virq as u32));
                }
            }
        }
    }
}
