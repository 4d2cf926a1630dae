//! Console input (SPEC.md §21): the received bytes go, through the Ctrl-] escape, into
//! the focused domain's ring, and raise its VIRQ_CONSOLE.

use crate::console::input::{next_focus, Input};
use crate::platform::{say, Platform};
use crate::system::{live_index, System};
use alloc::vec::Vec;
use hypercall_abi::event::virq;

impl<P: Platform> System<P> {
    /// Ids of the domains that are still live.
    fn live_ids(&self) -> impl Iterator<Item = u32> + Clone + '_ {
        self.domains.iter().filter(|domain| domain.memory.is_some()).map(|domain| domain.id)
    }

    /// Moves the focus to `target` (if live) and says so.
    fn focus_on(&mut self, target: Option<u32>) {
        self.focus = target;
        if let Some(index) = target.and_then(|id| live_index(&self.domains, id)) {
            let domain = &self.domains[index];
            say!(self.platform, "console input: d{} {}", domain.id, domain.name);
        }
    }

    /// The focus at boot: the lowest id (announced).
    pub(crate) fn initial_focus(&mut self) {
        let first = next_focus(self.live_ids(), None);
        self.focus_on(first);
    }

    /// After domain `index` ended: its ring is gone, and if it had the focus the focus
    /// moves on.
    pub(crate) fn domain_ended_for_input(&mut self, index: usize) {
        let domain = &mut self.domains[index];
        let dropped = domain.input.dropped();
        if dropped > 0 {
            say!(
                self.platform,
                "console input: d{} {}: {dropped} bytes dropped (its ring was full)",
                domain.id,
                domain.name
            );
        }
        domain.input = Default::default();
        let id = domain.id;
        if self.focus == Some(id) {
            let next = next_focus(self.live_ids(), Some(id));
            self.focus_on(next);
        }
    }

    /// Drains console input: every byte is decoded and acted on; then VIRQ_CONSOLE is
    /// raised once in each domain that got bytes.
    pub fn receive_console_input(&mut self) {
        let mut fed: Vec<usize> = Vec::new();
        while let Some(byte) = self.platform.console_receive() {
            match self.escape.feed(byte) {
                Input::Deliver(byte) => {
                    if let Some(index) = self.focus.and_then(|id| live_index(&self.domains, id)) {
                        self.domains[index].input.push(byte);
                        if !fed.contains(&index) {
                            fed.push(index);
                        }
                    }
                }
                Input::FocusTo(id) => match live_index(&self.domains, id) {
                    Some(_) => self.focus_on(Some(id)),
                    None => say!(self.platform, "console input: no domain d{id}"),
                },
                Input::FocusNext => {
                    let next = next_focus(self.live_ids(), self.focus);
                    self.focus_on(next);
                }
                Input::Debug => {
                    if let Some(id) = self.focus {
                        self.raise_virq(id, virq::DEBUG);
                    }
                }
                Input::Nothing => {}
            }
        }
        for index in fed {
            let id = self.domains[index].id;
            self.raise_virq(id, virq::CONSOLE);
        }
    }
}
