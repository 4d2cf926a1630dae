//! Console input (SPEC.md §21): the COM1 receive interrupt's bytes go, through the
//! Ctrl-] escape, into the focused domain's ring, and raise its VIRQ_CONSOLE.

use crate::machine::console;
use crate::system::{live_index, System};
use crate::wakeups::Wakeups;
use alloc::vec::Vec;
use hypercall_abi::event::virq;
use hypervisor::console_input::{next_focus, Input};

/// Ids of the domains that are still live.
fn live_ids(system: &System) -> impl Iterator<Item = u32> + Clone + '_ {
    system.domains.iter().filter(|domain| domain.memory.is_some()).map(|domain| domain.id)
}

/// Moves the focus to `target` (if live) and says so.
fn focus_on(system: &mut System, target: Option<u32>) {
    system.focus = target;
    if let Some(index) = target.and_then(|id| live_index(&system.domains, id)) {
        let domain = &system.domains[index];
        hvprintln!("console input: d{} {}", domain.id, domain.name);
    }
}

/// The focus at boot: the lowest id (announced).
pub(crate) fn initial_focus(system: &mut System) {
    let first = next_focus(live_ids(system), None);
    focus_on(system, first);
}

/// After domain `id` ended: its ring is gone, and if it had the focus the focus moves on.
pub(crate) fn domain_ended(system: &mut System, index: usize) {
    let domain = &mut system.domains[index];
    let dropped = domain.input.dropped();
    if dropped > 0 {
        hvprintln!("console input: d{} {}: {dropped} bytes dropped (its ring was full)", domain.id, domain.name);
    }
    domain.input = Default::default();
    let id = domain.id;
    if system.focus == Some(id) {
        let next = next_focus(live_ids(system), Some(id));
        focus_on(system, next);
    }
}

/// Drains the UART: every byte is decoded and acted on; then VIRQ_CONSOLE is raised once
/// in each domain that got bytes.
pub(crate) fn receive(system: &mut System) {
    let mut fed: Vec<usize> = Vec::new();
    while let Some(byte) = console::receive() {
        match system.escape.feed(byte) {
            Input::Deliver(byte) => {
                if let Some(index) = system.focus.and_then(|id| live_index(&system.domains, id)) {
                    system.domains[index].input.push(byte);
                    if !fed.contains(&index) {
                        fed.push(index);
                    }
                }
            }
            Input::FocusTo(id) => match live_index(&system.domains, id) {
                Some(_) => focus_on(system, Some(id)),
                None => hvprintln!("console input: no domain d{id}"),
            },
            Input::FocusNext => {
                let next = next_focus(live_ids(system), system.focus);
                focus_on(system, next);
            }
            Input::Debug => {
                if let Some(id) = system.focus {
                    raise(system, id, virq::DEBUG);
                }
            }
            Input::Nothing => {}
        }
    }
    for index in fed {
        let id = system.domains[index].id;
        raise(system, id, virq::CONSOLE);
    }
}

fn raise(system: &mut System, id: u32, number: u64) {
    let System { domains, scheduler, events, .. } = system;
    events.raise_virq(id, number, &mut Wakeups { domains, scheduler });
}
