//! Model-based test: random scheduler operation sequences against a reference written as
//! plain collections (a `VecDeque` queue and per-domain records), checked after every
//! step: queue order, running domain, states, counts, slice end, and every account.

use super::policy::{Account, Reason, Scheduler, State};
use proptest::prelude::*;
use std::collections::VecDeque;

const SLICE: u64 = 1_000;
const DOMAINS: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    Add,
    Block(usize),
    Wake(usize),
    End(usize),
    /// `switch(reason)` after `elapsed` cycles.
    Switch(Reason, u64),
}

fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![Just(Reason::Yield), Just(Reason::Preempted), Just(Reason::Blocked), Just(Reason::Ended)]
}

fn op() -> impl Strategy<Value = Op> {
    // Indices past the domains added so far are mapped onto existing ones by the test.
    prop_oneof![
        1 => Just(Op::Add),
        2 => (0..DOMAINS).prop_map(Op::Block),
        2 => (0..DOMAINS).prop_map(Op::Wake),
        1 => (0..DOMAINS).prop_map(Op::End),
        5 => (reason(), 0..3 * SLICE).prop_map(|(reason, elapsed)| Op::Switch(reason, elapsed)),
    ]
}

/// The reference: what the policy module documentation promises, in the plainest form.
#[derive(Default)]
struct Model {
    states: Vec<State>,
    queue: VecDeque<usize>,
    queued_at: Vec<Option<u64>>,
    accounts: Vec<Account>,
    running: Option<usize>,
    slice_start: u64,
    idle_since: Option<u64>,
    idle_cycles: u64,
}

impl Model {
    fn join(&mut self, index: usize, now: Option<u64>) {
        self.queue.push_back(index);
        self.queued_at[index] = now;
    }

    fn leave(&mut self, index: usize) {
        self.queue.retain(|&queued| queued != index);
    }

    fn add(&mut self) -> usize {
        self.states.push(State::Runnable);
        self.queued_at.push(None);
        self.accounts.push(Account::default());
        let index = self.states.len() - 1;
        self.join(index, None);
        index
    }

    fn block(&mut self, index: usize) {
        if self.states[index] == State::Runnable {
            self.leave(index);
            self.states[index] = State::Blocked;
        }
    }

    fn wake(&mut self, index: usize, now: u64) -> bool {
        if self.states[index] != State::Blocked {
            return false;
        }
        self.states[index] = State::Runnable;
        if self.running != Some(index) {
            self.join(index, Some(now));
        }
        true
    }

    fn end(&mut self, index: usize) {
        self.leave(index);
        self.states[index] = State::Ended;
    }

    fn switch(&mut self, reason: Reason, now: u64) -> Option<usize> {
        if let Some(outgoing) = self.running.take() {
            self.accounts[outgoing].cycles += now - self.slice_start;
            match reason {
                Reason::Yield => {}
                Reason::Preempted => self.accounts[outgoing].preemptions += 1,
                Reason::Blocked => self.block(outgoing),
                Reason::Ended => self.end(outgoing),
            }
            if self.states[outgoing] == State::Runnable {
                self.join(outgoing, Some(now));
            }
        } else if let Some(since) = self.idle_since.take() {
            self.idle_cycles += now - since;
        }
        let Some(next) = self.queue.pop_front() else {
            self.idle_since = Some(now);
            return None;
        };
        let account = &mut self.accounts[next];
        account.turns += 1;
        if let Some(joined) = self.queued_at[next].take() {
            account.longest_wait = account.longest_wait.max(now - joined);
        }
        self.running = Some(next);
        self.slice_start = now;
        Some(next)
    }
}

fn check(scheduler: &Scheduler, model: &Model, now: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(scheduler.len(), model.states.len());
    prop_assert_eq!(scheduler.is_empty(), model.states.is_empty());
    prop_assert!(scheduler.queue().eq(model.queue.iter().copied()), "queue {:?}", model.queue);
    prop_assert_eq!(scheduler.running(), model.running);
    for (index, &state) in model.states.iter().enumerate() {
        prop_assert_eq!(scheduler.state(index), state, "state of d{}", index);
        prop_assert_eq!(scheduler.account(index), model.accounts[index], "account of d{}", index);
    }
    let running_runnable = model.running.is_some_and(|index| model.states[index] == State::Runnable);
    prop_assert_eq!(scheduler.runnable_count(), model.queue.len() + usize::from(running_runnable));
    prop_assert_eq!(scheduler.live_count(), model.states.iter().filter(|&&state| state != State::Ended).count());
    prop_assert_eq!(scheduler.idle_cycles(), model.idle_cycles);
    let slice_end = model.running.map(|_| model.slice_start + SLICE);
    prop_assert_eq!(scheduler.slice_end(), slice_end);
    prop_assert_eq!(scheduler.slice_expired(now), slice_end.is_some_and(|end| now >= end));
    prop_assert_eq!(scheduler.slice_cycles(), SLICE);
    let everyone = scheduler.fairness(|_| true);
    prop_assert_eq!(everyone.domains, model.states.len());
    prop_assert_eq!(everyone.turns, model.accounts.iter().map(|account| account.turns).sum::<u64>());
    prop_assert_eq!(everyone.preemptions, model.accounts.iter().map(|account| account.preemptions).sum::<u64>());
    prop_assert_eq!(everyone.max_cycles, model.accounts.iter().map(|account| account.cycles).max().unwrap_or(0));
    prop_assert_eq!(everyone.min_cycles, model.accounts.iter().map(|account| account.cycles).min().unwrap_or(0));
    let longest_wait = model.accounts.iter().map(|account| account.longest_wait).max().unwrap_or(0);
    prop_assert_eq!(everyone.longest_wait, longest_wait);
    prop_assert_eq!(everyone.idle_cycles, model.idle_cycles);
    let evens = scheduler.fairness(|index| index % 2 == 0);
    prop_assert_eq!(evens.domains, model.states.len().div_ceil(2));
    prop_assert_eq!(evens.turns, model.accounts.iter().step_by(2).map(|account| account.turns).sum::<u64>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn scheduler_follows_a_plain_queue(ops in prop::collection::vec(op(), 1..80)) {
        let mut scheduler = Scheduler::new(SLICE);
        let mut model = Model::default();
        let mut now = 0u64;
        for op in ops {
            // Operations on a domain need one; the first added is index 0.
            let known = |index: usize| (!model.states.is_empty()).then(|| index % model.states.len());
            match op {
                Op::Add => prop_assert_eq!(scheduler.add(), model.add()),
                Op::Block(index) => {
                    if let Some(index) = known(index) {
                        scheduler.block(index);
                        model.block(index);
                    }
                }
                Op::Wake(index) => {
                    if let Some(index) = known(index) {
                        prop_assert_eq!(scheduler.wake(index, now), model.wake(index, now));
                    }
                }
                Op::End(index) => {
                    if let Some(index) = known(index) {
                        scheduler.end(index);
                        model.end(index);
                    }
                }
                Op::Switch(reason, elapsed) => {
                    now += elapsed;
                    prop_assert_eq!(scheduler.switch(reason, now), model.switch(reason, now));
                }
            }
            check(&scheduler, &model, now)?;
        }
    }
}
