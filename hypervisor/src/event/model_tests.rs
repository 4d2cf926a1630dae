//! Model-based test: random `event_channel_op` calls, virq raises and domain births and
//! deaths against a reference written from SPEC.md §17 as plain maps (every port of every
//! domain by number), comparing each result, every call made to the system ([`Notify`]),
//! and every observable table after each step.

use super::channels::{EventChannels, Notify, PortState};
use hypercall_abi::event::{event_cmd, status, virq, DOMAIN_SELF, PORTS_MAX};
use hypercall_abi::Errno;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Domains the operations name: 0 and 5 start dead; 1..=3 start live.
const DOMAIN_IDS: u32 = 6;
const COMMANDS: u64 = 9;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Raise(u32, u32),
    Unmask(u32, u32),
    Clear(u32, u32),
    Wake(u32),
}

#[derive(Default)]
struct Log(Vec<Call>);

impl Notify for Log {
    fn raise(&mut self, domain: u32, port: u32) {
        self.0.push(Call::Raise(domain, port));
    }
    fn unmask(&mut self, domain: u32, port: u32) {
        self.0.push(Call::Unmask(domain, port));
    }
    fn clear(&mut self, domain: u32, port: u32) {
        self.0.push(Call::Clear(domain, port));
    }
    fn wake(&mut self, domain: u32) {
        self.0.push(Call::Wake(domain));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Call {
        caller: u32,
        command: u64,
        a: u64,
        b: u64,
    },
    RaiseVirq(u32, u64),
    Add(u32),
    Remove(u32),
    /// `BIND_IPI` by `caller` until it fails: the port table's limit.
    Fill(u32),
}

/// Guest arguments aimed at the edges: small ports and domain ids, `DOMAIN_SELF`, the
/// port limit, ids that only fit after truncation to 32 bits, and anything.
fn argument() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0..8u64,
        1 => Just(DOMAIN_SELF),
        1 => (PORTS_MAX - 1)..=PORTS_MAX,
        1 => (1u64..4).prop_map(|low| 1 << 32 | low),
        1 => any::<u64>(),
    ]
}

/// `fill` weighs `Op::Fill` (1023 calls each) against the 97 of everything else.
fn op(fill: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        80 => (0..DOMAIN_IDS, 0..COMMANDS, argument(), argument())
            .prop_map(|(caller, command, a, b)| Op::Call { caller, command, a, b }),
        8 => (0..DOMAIN_IDS, prop_oneof![0..virq::COUNT + 1, any::<u64>()]).prop_map(|(domain, virq)| Op::RaiseVirq(domain, virq)),
        4 => (0..DOMAIN_IDS).prop_map(Op::Add),
        4 => (0..DOMAIN_IDS).prop_map(Op::Remove),
        fill => (0..DOMAIN_IDS).prop_map(Op::Fill),
    ]
}

/// The reference: each live domain's open ports by number (closed ports are absent).
#[derive(Default)]
struct Model {
    domains: BTreeMap<u32, BTreeMap<u32, PortState>>,
}

type Outcome = Result<u64, Errno>;

impl Model {
    fn state(&self, domain: u32, port: u32) -> PortState {
        self.domains.get(&domain).and_then(|ports| ports.get(&port)).copied().unwrap_or_default()
    }

    fn open_port(&self, caller: u32, value: u64) -> Result<(u32, PortState), Errno> {
        if value == 0 || value >= PORTS_MAX {
            return Err(Errno::EINVAL);
        }
        match self.state(caller, value as u32) {
            PortState::Closed => Err(Errno::EINVAL),
            state => Ok((value as u32, state)),
        }
    }

    fn domain(&self, caller: u32, value: u64) -> Result<u32, Errno> {
        match value {
            DOMAIN_SELF => Ok(caller),
            value if value <= u64::from(u32::MAX) && self.domains.contains_key(&(value as u32)) => Ok(value as u32),
            _ => Err(Errno::ESRCH),
        }
    }

    fn lowest_free(&self, domain: u32) -> Result<u32, Errno> {
        // The first number the sorted open ports skip.
        let ports = self.domains[&domain].keys();
        let free = ports
            .zip(1..)
            .find(|&(&open, expected)| open != expected)
            .map_or(self.domains[&domain].len() as u32 + 1, |(_, gap)| gap);
        if u64::from(free) < PORTS_MAX {
            Ok(free)
        } else {
            Err(Errno::ENOSPC)
        }
    }

    fn open(&mut self, domain: u32, state: PortState, log: &mut Log) -> Outcome {
        let port = self.lowest_free(domain)?;
        self.domains.get_mut(&domain).unwrap().insert(port, state);
        log.0.push(Call::Clear(domain, port));
        Ok(u64::from(port))
    }

    fn call(&mut self, caller: u32, command: u64, a: u64, b: u64, log: &mut Log) -> Outcome {
        if !self.domains.contains_key(&caller) {
            return Err(Errno::ESRCH);
        }
        match command {
            event_cmd::ALLOC_UNBOUND => {
                let remote = self.domain(caller, a)?;
                self.open(caller, PortState::Unbound { remote }, log)
            }
            event_cmd::BIND_INTERDOMAIN => {
                let remote_domain = self.domain(caller, a)?;
                if b == 0 || b >= PORTS_MAX {
                    return Err(Errno::EINVAL);
                }
                let remote_port = b as u32;
                match self.state(remote_domain, remote_port) {
                    PortState::Unbound { remote } if remote == caller => {}
                    PortState::Unbound { .. } => return Err(Errno::EPERM),
                    _ => return Err(Errno::EINVAL),
                }
                let port = self.open(caller, PortState::Interdomain { remote_domain, remote_port }, log)?;
                let local = PortState::Interdomain { remote_domain: caller, remote_port: port as u32 };
                self.domains.get_mut(&remote_domain).unwrap().insert(remote_port, local);
                Ok(port)
            }
            event_cmd::BIND_VIRQ => {
                if a >= virq::COUNT {
                    return Err(Errno::EINVAL);
                }
                if self.domains[&caller].values().any(|&state| state == PortState::Virq(a as u32)) {
                    return Err(Errno::EEXIST);
                }
                self.open(caller, PortState::Virq(a as u32), log)
            }
            event_cmd::BIND_IPI => self.open(caller, PortState::Ipi, log),
            event_cmd::CLOSE => {
                let (port, state) = self.open_port(caller, a)?;
                self.domains.get_mut(&caller).unwrap().remove(&port);
                if let PortState::Interdomain { remote_domain, remote_port } = state {
                    if let Some(peer) = self.domains.get_mut(&remote_domain) {
                        peer.insert(remote_port, PortState::Unbound { remote: caller });
                        log.0.push(Call::Wake(remote_domain));
                    }
                }
                log.0.push(Call::Clear(caller, port));
                Ok(0)
            }
            event_cmd::SEND => match self.open_port(caller, a)? {
                (_, PortState::Interdomain { remote_domain, remote_port }) => {
                    log.0.push(Call::Raise(remote_domain, remote_port));
                    Ok(0)
                }
                (port, PortState::Ipi) => {
                    log.0.push(Call::Raise(caller, port));
                    Ok(0)
                }
                _ => Err(Errno::EINVAL),
            },
            event_cmd::STATUS => {
                if a == 0 || a >= PORTS_MAX {
                    return Err(Errno::EINVAL);
                }
                // SPEC.md §17: state in bits 0..8, remote domain (24 bits) in 8..32, the
                // remote port or virq in 32..64.
                let pack = |state: u64, domain: u32, detail: u32| {
                    state | (u64::from(domain) & 0xff_ffff) << 8 | u64::from(detail) << 32
                };
                Ok(match self.state(caller, a as u32) {
                    PortState::Closed => status::CLOSED,
                    PortState::Unbound { remote } => pack(status::UNBOUND, remote, 0),
                    PortState::Interdomain { remote_domain, remote_port } => {
                        pack(status::INTERDOMAIN, remote_domain, remote_port)
                    }
                    PortState::Virq(virq) => pack(status::VIRQ, 0, virq),
                    PortState::Ipi => status::IPI,
                })
            }
            event_cmd::UNMASK => {
                let (port, _) = self.open_port(caller, a)?;
                log.0.push(Call::Unmask(caller, port));
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn virq_port(&self, domain: u32, virq: u64) -> Option<u32> {
        let virq = u32::try_from(virq).ok()?;
        let ports = self.domains.get(&domain)?;
        ports.iter().find(|(_, &state)| state == PortState::Virq(virq)).map(|(&port, _)| port)
    }

    fn remove(&mut self, domain: u32, log: &mut Log) -> usize {
        let Some(dead) = self.domains.remove(&domain) else { return 0 };
        for state in dead.values() {
            if let PortState::Interdomain { remote_domain, remote_port } = *state {
                if let Some(peer) = self.domains.get_mut(&remote_domain) {
                    peer.insert(remote_port, PortState::Unbound { remote: domain });
                    log.0.push(Call::Wake(remote_domain));
                }
            }
        }
        dead.len()
    }
}

fn encode(outcome: Outcome) -> i64 {
    match outcome {
        Ok(value) => value as i64,
        Err(errno) => errno.to_return(),
    }
}

fn check(channels: &EventChannels, model: &Model) -> Result<(), TestCaseError> {
    let probe_ports = (0..10).chain([PORTS_MAX as u32 - 1, PORTS_MAX as u32]);
    for domain in 0..DOMAIN_IDS {
        prop_assert_eq!(channels.has_domain(domain), model.domains.contains_key(&domain));
        prop_assert_eq!(channels.domain_open_ports(domain), model.domains.get(&domain).map_or(0, BTreeMap::len));
        for port in probe_ports.clone() {
            prop_assert_eq!(channels.port_state(domain, port), model.state(domain, port), "d{} port {}", domain, port);
        }
        for virq in [0, 1, 2, 3, 1 << 32] {
            prop_assert_eq!(
                channels.virq_port(domain, virq),
                model.virq_port(domain, virq),
                "d{} virq {}",
                domain,
                virq
            );
        }
    }
    prop_assert_eq!(channels.open_ports(), model.domains.values().map(BTreeMap::len).sum::<usize>());
    // Every port beyond the probed ones, too: both ends of a connection name each other.
    for (&domain, ports) in &model.domains {
        for (&port, &state) in ports {
            prop_assert_eq!(channels.port_state(domain, port), state);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn event_channels_follow_the_spec_model(ops in prop::collection::vec(op(0), 1..80)) {
        run(ops)?;
    }
}

proptest! {
    // Fewer cases: each fill is a thousand calls.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Full port tables (ENOSPC), then closes and reuse of the lowest free port.
    #[test]
    fn event_channels_at_the_port_limit(ops in prop::collection::vec(op(6), 1..40)) {
        run(ops)?;
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut channels = EventChannels::new();
    let mut model = Model::default();
    for domain in 1..=3 {
        channels.add_domain(domain);
        model.domains.insert(domain, BTreeMap::new());
    }
    for op in ops {
        let (mut real, mut expected) = (Log::default(), Log::default());
        match op {
            Op::Call { caller, command, a, b } => {
                let result = channels.op(caller, &[command, a, b, u64::MAX, 0, 1], &mut real);
                let want = encode(model.call(caller, command, a, b, &mut expected));
                prop_assert_eq!(result, want, "d{} command {} ({:#x}, {:#x})", caller, command, a, b);
            }
            Op::RaiseVirq(domain, virq) => {
                let port = model.virq_port(domain, virq);
                if let Some(port) = port {
                    expected.0.push(Call::Raise(domain, port));
                }
                prop_assert_eq!(channels.raise_virq(domain, virq, &mut real), port.is_some());
            }
            Op::Add(domain) => {
                channels.add_domain(domain);
                model.domains.entry(domain).or_default();
            }
            Op::Remove(domain) => {
                prop_assert_eq!(channels.remove_domain(domain, &mut real), model.remove(domain, &mut expected));
            }
            Op::Fill(caller) => loop {
                let result = channels.op(caller, &[event_cmd::BIND_IPI, 0, 0, 0, 0, 0], &mut real);
                let want = encode(model.call(caller, event_cmd::BIND_IPI, 0, 0, &mut expected));
                prop_assert_eq!(result, want);
                if result < 0 {
                    break;
                }
            },
        }
        prop_assert_eq!(&real.0, &expected.0);
        check(&channels, &model)?;
    }
    Ok(())
}
