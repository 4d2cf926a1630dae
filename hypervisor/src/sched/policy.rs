//! Which domain runs next: preemptive round robin with a fixed time slice.
//!
//! Runnable domains that are not running wait in one first-in first-out queue threaded
//! through the per-domain table (previous/next indices), so queueing, unqueueing and
//! picking are O(1) with no loop anywhere on the switch path. Blocked and ended domains
//! are in no queue at all: they cost nothing per switch however many there are.
//!
//! The running domain is outside the queue. When it leaves the CPU still runnable (yield
//! or preemption) it goes to the tail, behind every domain queued at that moment, so each
//! of those runs before it does again; a woken or new domain also joins at the tail. That
//! bounds any runnable domain's wait by (runnable domains − 1) slices, plus however late
//! the preemption interrupts arrive.
//!
//! Time is whatever the caller passes as `now` (TSC cycles in the hypervisor); the
//! scheduler only compares and subtracts it, and never reads a clock itself.

use alloc::vec::Vec;
use core::fmt;

/// Marks the end of the queue and an unlinked slot.
const NONE: usize = usize::MAX;

/// Where a domain is in the scheduler's life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Running, or queued to run.
    Runnable,
    /// Waiting for `wake`; in no queue.
    Blocked,
    /// Gone for good; `wake` and `block` ignore it.
    Ended,
}

/// Why the running domain leaves the CPU (the argument of [`Scheduler::switch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It gave up the rest of its slice: queued last.
    Yield,
    /// Its slice ended: queued last, and counted as a preemption.
    Preempted,
    /// It sleeps until `wake`.
    Blocked,
    /// It is gone.
    Ended,
}

/// What one domain received, for fairness reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Cycles it ran (from being picked to leaving the CPU).
    pub cycles: u64,
    /// Times it was picked to run.
    pub turns: u64,
    /// Times it was preempted at the end of its slice.
    pub preemptions: u64,
    /// Longest time it waited runnable in the queue before being picked. A domain's
    /// first wait after `add` is not measured (it starts before the first `switch`).
    pub longest_wait: u64,
}

struct Slot {
    state: State,
    /// Queue neighbours, `NONE` at the ends; both `NONE` and `queued` false when unlinked.
    previous: usize,
    next: usize,
    queued: bool,
    /// When it joined the queue, if known.
    queued_at: Option<u64>,
    account: Account,
}

/// The round-robin queue of domains (by index), their states, slices and accounts.
pub struct Scheduler {
    slice: u64,
    slots: Vec<Slot>,
    head: usize,
    tail: usize,
    queued: usize,
    ended: usize,
    running: Option<usize>,
    /// When the running domain was picked.
    slice_start: u64,
    /// When the CPU went idle (the last `switch` found nobody), if it is idle.
    idle_since: Option<u64>,
    idle_cycles: u64,
}

impl Scheduler {
    /// A scheduler with no domains whose slices last `slice_cycles` (at least 1).
    pub fn new(slice_cycles: u64) -> Self {
        Scheduler {
            slice: slice_cycles.max(1),
            slots: Vec::new(),
            head: NONE,
            tail: NONE,
            queued: 0,
            ended: 0,
            running: None,
            slice_start: 0,
            idle_since: None,
            idle_cycles: 0,
        }
    }

    /// Adds a domain, runnable and queued last; returns its index (0, 1, 2, … in order of
    /// adding, so it matches a domain table that grows the same way).
    pub fn add(&mut self) -> usize {
        let index = self.slots.len();
        self.slots.push(Slot {
            state: State::Runnable,
            previous: NONE,
            next: NONE,
            queued: false,
            queued_at: None,
            account: Account::default(),
        });
        self.enqueue(index, None);
        index
    }

    /// How many domains were added.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no domain was ever added.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Panics if `index` was never added (a caller bug, like a bad table index).
    pub fn state(&self, index: usize) -> State {
        self.slots[index].state
    }

    /// The domain holding the CPU since the last `switch`, if any. It stays "running" after
    /// `block`/`end` on it until the caller switches away.
    pub fn running(&self) -> Option<usize> {
        self.running
    }

    /// Domains that are runnable: the queued ones plus the running one if it still is.
    pub fn runnable_count(&self) -> usize {
        let running = self.running.is_some_and(|index| self.slots[index].state == State::Runnable);
        self.queued + usize::from(running)
    }

    /// Domains not ended (runnable or blocked). When `switch` returns `None` and this is
    /// not 0, the CPU idles waiting for a wake; when it is 0, the run is over.
    pub fn live_count(&self) -> usize {
        self.slots.len() - self.ended
    }

    /// The domains waiting to run, in the order they will be picked.
    pub fn queue(&self) -> impl Iterator<Item = usize> + '_ {
        core::iter::successors(Some(self.head).filter(|&index| index != NONE), |&index| {
            Some(self.slots[index].next).filter(|&next| next != NONE)
        })
    }

    /// Puts a runnable domain to sleep until `wake`; nothing for a blocked or ended one.
    /// A queued domain leaves the queue; for the running domain the caller then switches
    /// away (`switch(Reason::Blocked, ..)` does both at once).
    pub fn block(&mut self, index: usize) {
        if self.slots[index].state == State::Runnable {
            self.unlink(index);
            self.slots[index].state = State::Blocked;
        }
    }

    /// Makes a blocked domain runnable, queued last (it does not preempt the running one).
    /// `false`, and no change, if it was not blocked: an ended domain stays ended and a
    /// runnable one keeps its place. A running domain that blocked but was woken before the
    /// caller switched away just keeps running.
    pub fn wake(&mut self, index: usize, now: u64) -> bool {
        if self.slots[index].state != State::Blocked {
            return false;
        }
        self.slots[index].state = State::Runnable;
        if self.running != Some(index) {
            self.enqueue(index, Some(now));
        }
        true
    }

    /// Ends a domain for good, wherever it is. For the running domain the caller then
    /// switches away (`switch(Reason::Ended, ..)` does both at once).
    pub fn end(&mut self, index: usize) {
        self.unlink(index);
        if self.slots[index].state != State::Ended {
            self.slots[index].state = State::Ended;
            self.ended += 1;
        }
    }

    /// Takes the CPU from the running domain for `reason` (ignored when nobody runs: the CPU
    /// was idle) and gives it to the first queued domain, whose slice starts at `now`; that
    /// domain is returned. A domain that yields or is preempted and still runnable goes to
    /// the tail first, so when it is alone it is picked again. `None`: nobody is runnable;
    /// the CPU idles until a `wake` and another `switch`. O(1).
    pub fn switch(&mut self, reason: Reason, now: u64) -> Option<usize> {
        if let Some(outgoing) = self.running.take() {
            let account = &mut self.slots[outgoing].account;
            account.cycles = account.cycles.saturating_add(now.saturating_sub(self.slice_start));
            match reason {
                Reason::Yield => {}
                Reason::Preempted => account.preemptions += 1,
                Reason::Blocked => self.block(outgoing),
                Reason::Ended => self.end(outgoing),
            }
            if self.slots[outgoing].state == State::Runnable {
                self.enqueue(outgoing, Some(now));
            }
        } else if let Some(since) = self.idle_since.take() {
            self.idle_cycles = self.idle_cycles.saturating_add(now.saturating_sub(since));
        }

        let next = self.head;
        if next == NONE {
            self.idle_since = Some(now);
            return None;
        }
        self.unlink(next);
        let slot = &mut self.slots[next];
        slot.account.turns += 1;
        if let Some(queued_at) = slot.queued_at.take() {
            slot.account.longest_wait = slot.account.longest_wait.max(now.saturating_sub(queued_at));
        }
        self.running = Some(next);
        self.slice_start = now;
        Some(next)
    }

    /// When the running domain's slice ends (the preemption deadline); `None` when idle.
    pub fn slice_end(&self) -> Option<u64> {
        self.running.map(|_| self.slice_start.saturating_add(self.slice))
    }

    /// Whether the running domain has used up its slice by `now`: an interrupt that arrives
    /// for another reason (a domain timer) at or after the slice end should preempt too.
    pub fn slice_expired(&self, now: u64) -> bool {
        self.slice_end().is_some_and(|end| now >= end)
    }

    /// The length of a time slice, in TSC cycles.
    pub fn slice_cycles(&self) -> u64 {
        self.slice
    }

    /// What domain `index` has received so far (the running domain's current slice is
    /// counted when it leaves the CPU).
    pub fn account(&self, index: usize) -> Account {
        self.slots[index].account
    }

    /// Cycles no domain ran, up to the last `switch`.
    pub fn idle_cycles(&self) -> u64 {
        self.idle_cycles
    }

    /// Summary over the domains for which `include` holds (for example the ones that were
    /// runnable the whole run: comparing a domain that slept or ended early with one that
    /// spun says nothing about fairness). O(domains).
    pub fn fairness(&self, include: impl Fn(usize) -> bool) -> Fairness {
        let mut summary = Fairness { idle_cycles: self.idle_cycles, ..Fairness::default() };
        for (_, slot) in self.slots.iter().enumerate().filter(|(index, _)| include(*index)) {
            let account = slot.account;
            summary.min_cycles =
                if summary.domains == 0 { account.cycles } else { summary.min_cycles.min(account.cycles) };
            summary.max_cycles = summary.max_cycles.max(account.cycles);
            summary.longest_wait = summary.longest_wait.max(account.longest_wait);
            summary.turns += account.turns;
            summary.preemptions += account.preemptions;
            summary.domains += 1;
        }
        summary
    }

    fn enqueue(&mut self, index: usize, now: Option<u64>) {
        debug_assert!(!self.slots[index].queued, "queued twice");
        let slot = &mut self.slots[index];
        slot.queued = true;
        slot.queued_at = now;
        slot.previous = self.tail;
        slot.next = NONE;
        match self.tail {
            NONE => self.head = index,
            tail => self.slots[tail].next = index,
        }
        self.tail = index;
        self.queued += 1;
    }

    /// Takes `index` out of the queue; nothing if it is not queued.
    fn unlink(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.queued {
            return;
        }
        let (previous, next) = (slot.previous, slot.next);
        slot.queued = false;
        slot.previous = NONE;
        slot.next = NONE;
        match previous {
            NONE => self.head = next,
            previous => self.slots[previous].next = next,
        }
        match next {
            NONE => self.tail = previous,
            next => self.slots[next].previous = previous,
        }
        self.queued -= 1;
    }
}

/// Fairness figures over a set of domains ([`Scheduler::fairness`]), in cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fairness {
    /// How many domains the figures cover.
    pub domains: usize,
    /// Least and most CPU time any of them received.
    pub min_cycles: u64,
    /// See `min_cycles`.
    pub max_cycles: u64,
    /// Longest any of them waited runnable before being picked.
    pub longest_wait: u64,
    /// Times one of them was picked to run.
    pub turns: u64,
    /// Times one of them was preempted at the end of its slice.
    pub preemptions: u64,
    /// CPU time nobody ran (whole system, not just these domains).
    pub idle_cycles: u64,
}

impl Fairness {
    /// The figures in milliseconds, given the cycle counter's frequency, for a summary line:
    /// `64 domains: cpu 101.2..102.0 ms, longest wait 640.3 ms, 6400 turns, 6000 preemptions, idle 0.0 ms`.
    pub fn display(&self, cycles_per_second: u64) -> impl fmt::Display + '_ {
        Milliseconds { fairness: self, cycles_per_second: cycles_per_second.max(1) }
    }
}

struct Milliseconds<'a> {
    fairness: &'a Fairness,
    cycles_per_second: u64,
}

impl Milliseconds<'_> {
    /// Tenths of a millisecond, in u128 so 10 000 × cycles cannot overflow.
    fn tenths(&self, cycles: u64) -> Tenths {
        Tenths((u128::from(cycles) * 10_000 / u128::from(self.cycles_per_second)) as u64)
    }
}

struct Tenths(u64);

impl fmt::Display for Tenths {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

impl fmt::Display for Milliseconds<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fairness = self.fairness;
        write!(
            formatter,
            "{} domains: cpu {}..{} ms, longest wait {} ms, {} turns, {} preemptions, idle {} ms",
            fairness.domains,
            self.tenths(fairness.min_cycles),
            self.tenths(fairness.max_cycles),
            self.tenths(fairness.longest_wait),
            fairness.turns,
            fairness.preemptions,
            self.tenths(fairness.idle_cycles),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Reason, Scheduler, State};

    const SLICE: u64 = 10_000_000;

    fn with_domains(count: usize) -> Scheduler {
        let mut scheduler = Scheduler::new(SLICE);
        for expected in 0..count {
            assert_eq!(scheduler.add(), expected);
        }
        scheduler
    }

    /// Picks made by `count` switches for `reason`, one cycle apart.
    fn picks(scheduler: &mut Scheduler, reason: Reason, count: usize) -> Vec<Option<usize>> {
        (0..count).map(|step| scheduler.switch(reason, step as u64)).collect()
    }

    #[test]
    fn round_robin_in_order_of_adding() {
        let mut scheduler = with_domains(3);
        let order = [0, 1, 2, 0, 1, 2, 0].map(Some);
        assert_eq!(picks(&mut scheduler, Reason::Yield, 7), order);
        let mut scheduler = with_domains(3);
        assert_eq!(picks(&mut scheduler, Reason::Preempted, 7), order);
    }

    #[test]
    fn blocked_domains_are_never_picked() {
        let mut scheduler = with_domains(4);
        scheduler.block(1);
        scheduler.block(2);
        assert_eq!(scheduler.runnable_count(), 2);
        assert_eq!(picks(&mut scheduler, Reason::Preempted, 5), [0, 3, 0, 3, 0].map(Some));
        assert!(scheduler.wake(2, 10));
        assert_eq!(scheduler.state(2), State::Runnable);
        // Woken last: behind 3, which was queued when 0 was preempted... then 0 itself.
        assert_eq!(picks(&mut scheduler, Reason::Preempted, 4), [3, 2, 0, 3].map(Some));
        assert_eq!(scheduler.account(1).turns, 0);
    }

    #[test]
    fn yield_lets_every_other_runnable_domain_run_first() {
        let mut scheduler = with_domains(5);
        scheduler.block(3);
        let first = scheduler.switch(Reason::Yield, 0).unwrap();
        let queued: Vec<usize> = scheduler.queue().collect();
        assert_eq!(queued, [1, 2, 4]);
        let after: Vec<usize> = picks(&mut scheduler, Reason::Yield, 4).into_iter().flatten().collect();
        assert_eq!(after, [1, 2, 4, first], "the yielder comes back only after the others");
    }

    #[test]
    fn a_lone_domain_keeps_running() {
        let mut scheduler = with_domains(1);
        assert_eq!(scheduler.switch(Reason::Yield, 100), Some(0));
        assert_eq!(scheduler.slice_end(), Some(100 + SLICE));
        assert!(!scheduler.slice_expired(100 + SLICE - 1));
        assert!(scheduler.slice_expired(100 + SLICE));
        assert_eq!(scheduler.switch(Reason::Preempted, 100 + SLICE), Some(0));
        assert_eq!(scheduler.slice_end(), Some(100 + 2 * SLICE), "a fresh slice");
        assert_eq!(scheduler.switch(Reason::Yield, 100 + SLICE + 5), Some(0));
        let account = scheduler.account(0);
        assert_eq!((account.cycles, account.turns, account.preemptions), (SLICE + 5, 3, 1));
    }

    #[test]
    fn ended_domains_stay_ended() {
        let mut scheduler = with_domains(3);
        scheduler.end(1);
        assert!(!scheduler.wake(1, 0), "wake of an ended domain is ignored");
        scheduler.block(1);
        assert_eq!(scheduler.state(1), State::Ended);
        assert_eq!(picks(&mut scheduler, Reason::Yield, 4), [0, 2, 0, 2].map(Some));
        // Ending the running domain through `switch`.
        assert_eq!(scheduler.running(), Some(2));
        assert_eq!(scheduler.switch(Reason::Ended, 10), Some(0));
        assert_eq!(scheduler.state(2), State::Ended);
        assert_eq!(scheduler.live_count(), 1, "0 is still runnable");
        assert_eq!(scheduler.switch(Reason::Ended, 11), None);
        assert_eq!((scheduler.runnable_count(), scheduler.live_count()), (0, 0), "the run is over");
        assert!(!scheduler.wake(0, 12));
        assert_eq!(scheduler.switch(Reason::Yield, 13), None);
    }

    #[test]
    fn wake_of_a_runnable_domain_keeps_its_place() {
        let mut scheduler = with_domains(3);
        assert_eq!(scheduler.switch(Reason::Yield, 0), Some(0));
        assert!(!scheduler.wake(2, 1));
        assert!(!scheduler.wake(0, 1), "the running domain is not blocked");
        assert_eq!(scheduler.queue().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn nobody_runnable_idles_until_a_wake() {
        let mut scheduler = with_domains(2);
        assert_eq!(scheduler.switch(Reason::Yield, 0), Some(0));
        assert_eq!(scheduler.switch(Reason::Blocked, 10), Some(1));
        assert_eq!(scheduler.switch(Reason::Blocked, 30), None);
        assert_eq!((scheduler.running(), scheduler.slice_end(), scheduler.runnable_count()), (None, None, 0));
        assert!(!scheduler.slice_expired(u64::MAX));
        // Nobody woke: still idle, and the reason is ignored when nothing runs.
        assert_eq!(scheduler.switch(Reason::Ended, 40), None);
        assert!(scheduler.wake(1, 100));
        assert_eq!(scheduler.switch(Reason::Yield, 130), Some(1));
        assert_eq!(scheduler.idle_cycles(), 100);
        assert_eq!(scheduler.account(1).longest_wait, 30);
        assert_eq!(scheduler.state(0), State::Blocked);
        assert_eq!(scheduler.state(1), State::Runnable);
    }

    #[test]
    fn a_block_cancelled_by_a_wake_before_the_switch_keeps_running() {
        let mut scheduler = with_domains(2);
        assert_eq!(scheduler.switch(Reason::Yield, 0), Some(0));
        scheduler.block(0);
        assert_eq!(scheduler.runnable_count(), 1);
        assert!(scheduler.wake(0, 5), "an event arrived before the caller switched away");
        assert_eq!(scheduler.running(), Some(0));
        assert_eq!(scheduler.queue().collect::<Vec<_>>(), [1], "not queued while running");
        assert_eq!(picks(&mut scheduler, Reason::Preempted, 3), [1, 0, 1].map(Some));
    }

    #[test]
    fn blocked_domains_cost_nothing_per_switch() {
        // 100 000 sleeping domains and 2 runnable ones: 1 000 000 switches finish at once
        // because a switch touches only the queue's head and tail, never the table.
        let mut scheduler = Scheduler::new(SLICE);
        for _ in 0..100_000 {
            let index = scheduler.add();
            scheduler.block(index);
        }
        let (first, second) = (scheduler.add(), scheduler.add());
        for step in 0..1_000_000u64 {
            let expected = if step % 2 == 0 { first } else { second };
            assert_eq!(scheduler.switch(Reason::Preempted, step), Some(expected));
        }
    }

    #[test]
    fn fairness_summary_reads_in_milliseconds() {
        let mut scheduler = with_domains(3);
        scheduler.switch(Reason::Yield, 0);
        scheduler.switch(Reason::Preempted, 10_000_000);
        scheduler.switch(Reason::Preempted, 30_000_000);
        scheduler.switch(Reason::Blocked, 45_000_000);
        let summary = scheduler.fairness(|index| index != 2);
        assert_eq!((summary.domains, summary.min_cycles, summary.max_cycles), (2, 10_000_000, 20_000_000));
        assert_eq!(summary.longest_wait, 35_000_000, "domain 0 waited from 10 to 45 ms (1 GHz)");
        assert_eq!(
            summary.display(1_000_000_000).to_string(),
            "2 domains: cpu 10.0..20.0 ms, longest wait 35.0 ms, 3 turns, 2 preemptions, idle 0.0 ms"
        );
    }

    /// Random operations against a plain reference model (a `VecDeque` queue), comparing
    /// the queue order, the running domain and the states after every step: the threaded
    /// queue stays intact through unlinks at the head, middle and tail.
    #[test]
    fn matches_a_reference_model_under_random_operations() {
        use std::collections::VecDeque;
        let mut random = Random(0x0dd5_eed5_0000_0042);
        let mut scheduler = Scheduler::new(SLICE);
        let mut queue: VecDeque<usize> = VecDeque::new();
        let mut states: Vec<State> = Vec::new();
        let mut running: Option<usize> = None;
        for now in 0..50_000u64 {
            let count = states.len() as u64;
            let target = random.below(count) as usize;
            match random.below(10) {
                0 if count < 300 => {
                    assert_eq!(scheduler.add(), states.len());
                    states.push(State::Runnable);
                    queue.push_back(states.len() - 1);
                }
                1 | 2 if count > 0 => {
                    scheduler.block(target);
                    if states[target] == State::Runnable {
                        states[target] = State::Blocked;
                        queue.retain(|&index| index != target);
                    }
                }
                3..=5 if count > 0 => {
                    let woken = states[target] == State::Blocked;
                    assert_eq!(scheduler.wake(target, now), woken);
                    if woken {
                        states[target] = State::Runnable;
                        if running != Some(target) {
                            queue.push_back(target);
                        }
                    }
                }
                6 if count > 0 && random.below(20) == 0 => {
                    scheduler.end(target);
                    states[target] = State::Ended;
                    queue.retain(|&index| index != target);
                }
                _ => {
                    let reason =
                        [Reason::Yield, Reason::Preempted, Reason::Blocked, Reason::Ended][random.below(4) as usize];
                    let reason = if reason == Reason::Ended && random.below(10) != 0 { Reason::Yield } else { reason };
                    if let Some(outgoing) = running.take() {
                        match reason {
                            Reason::Blocked if states[outgoing] == State::Runnable => states[outgoing] = State::Blocked,
                            Reason::Ended => states[outgoing] = State::Ended,
                            _ => {}
                        }
                        if states[outgoing] == State::Runnable {
                            queue.push_back(outgoing);
                        }
                    }
                    running = queue.pop_front();
                    assert_eq!(scheduler.switch(reason, now), running);
                }
            }
            assert!(scheduler.queue().eq(queue.iter().copied()), "queue differs at step {now}");
            assert_eq!(scheduler.running(), running);
            let running_runnable = running.is_some_and(|index| states[index] == State::Runnable);
            assert_eq!(scheduler.runnable_count(), queue.len() + usize::from(running_runnable));
            assert!((0..states.len()).all(|index| scheduler.state(index) == states[index]));
            assert_eq!(scheduler.live_count(), states.iter().filter(|&&state| state != State::Ended).count());
        }
    }

    /// xorshift64*: deterministic, good enough to vary run lengths.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
        }
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Behaviour {
        /// Hostile: never yields or blocks, events masked; only preemption stops it.
        Spinner,
        /// Runs 0..2 slices' worth, then yields (preempted first if that is past its slice).
        Yielder,
        /// Runs 0..½ slice, then blocks until a timer 0..5 slices later wakes it.
        Sleeper,
    }

    /// The simulation's own records, to check the scheduler against.
    struct Harness {
        /// Picks so far; a pick's number is the count after it.
        turn: u64,
        last_pick: Vec<u64>,
        /// For each domain: the turn count when it last joined the queue, the domains
        /// queued ahead of it then, and when (if measured).
        joined_turn: Vec<u64>,
        ahead: Vec<Vec<usize>>,
        joined_at: Vec<Option<u64>>,
        longest_wait: u64,
        random: Random,
    }

    impl Harness {
        fn new(domains: usize) -> Self {
            Harness {
                turn: 0,
                last_pick: vec![0; domains],
                joined_turn: vec![0; domains],
                ahead: (0..domains).map(|index| (0..index).collect()).collect(),
                joined_at: vec![None; domains],
                longest_wait: 0,
                random: Random(0x5eed_1234_abcd_0001),
            }
        }

        /// Call just before the scheduler queues `index` (wake, or yield/preemption switch).
        fn joins(&mut self, index: usize, now: u64, scheduler: &Scheduler) {
            self.ahead[index] = scheduler.queue().collect();
            self.joined_turn[index] = self.turn;
            self.joined_at[index] = Some(now);
        }

        /// Checks a pick: everyone queued ahead of it has run since it joined, and its wait
        /// is at most one late slice per such domain.
        fn picked(&mut self, index: usize, now: u64, slot_bound: u64) {
            for &other in &self.ahead[index] {
                assert!(
                    self.last_pick[other] > self.joined_turn[index],
                    "d{index} picked at turn {} before d{other}, which was queued ahead of it",
                    self.turn + 1
                );
            }
            if let Some(joined) = self.joined_at[index].take() {
                let wait = now - joined;
                assert!(wait <= self.ahead[index].len() as u64 * slot_bound, "d{index} waited {wait}");
                self.longest_wait = self.longest_wait.max(wait);
            }
            self.turn += 1;
            self.last_pick[index] = self.turn;
        }
    }

    /// 64 domains — hostile spinners, yielders and sleepers — over 10 000 slices of
    /// simulated time, preemption interrupts arriving up to 5 % of a slice late. At every
    /// pick: each domain queued ahead of the picked one when it joined the queue has run
    /// since (round robin), and its wait is at most one late slice per such domain. At the
    /// end: always-runnable spinners got the same number of turns within one, so the same
    /// CPU time within one late slice plus lateness; nobody starved. Prints the figures
    /// (`cargo test -p hypervisor --lib simulated -- --nocapture`).
    #[test]
    fn simulated_fairness_with_hostile_spinners() {
        const DOMAINS: usize = 64;
        const LATENESS: u64 = SLICE / 20;
        const HORIZON: u64 = 10_000 * SLICE;
        let behaviour = |index: usize| match index % 4 {
            0 | 3 => Behaviour::Spinner,
            1 => Behaviour::Yielder,
            _ => Behaviour::Sleeper,
        };
        let mut scheduler = with_domains(DOMAINS);
        let mut harness = Harness::new(DOMAINS);
        let mut timers: Vec<(u64, usize)> = Vec::new();

        let mut now = 0u64;
        // Picks after a switch; returns when the picked domain's preemption interrupt
        // arrives and when it yields or blocks.
        let picked = |scheduler: &Scheduler, picked: Option<usize>, now: u64, harness: &mut Harness| {
            let Some(index) = picked else { return (u64::MAX, u64::MAX) };
            harness.picked(index, now, SLICE + LATENESS);
            assert_eq!(scheduler.slice_end(), Some(now + SLICE));
            let preempt_at = now + SLICE + harness.random.below(LATENESS + 1);
            let act_at = match behaviour(index) {
                Behaviour::Spinner => u64::MAX,
                Behaviour::Yielder => now + harness.random.below(2 * SLICE),
                Behaviour::Sleeper => now + harness.random.below(SLICE / 2),
            };
            (preempt_at, act_at)
        };
        let switch = |scheduler: &mut Scheduler, reason, now, harness: &mut Harness| {
            let next = scheduler.switch(reason, now);
            (next, picked(scheduler, next, now, harness))
        };

        let (mut running, (mut preempt_at, mut act_at)) = switch(&mut scheduler, Reason::Yield, now, &mut harness);
        while now < HORIZON {
            let next_timer = timers.iter().copied().min();
            if let Some((at, index)) = next_timer.filter(|&(at, _)| at <= act_at.min(preempt_at)) {
                timers.retain(|&timer| timer != (at, index));
                now = at;
                harness.joins(index, now, &scheduler);
                assert!(scheduler.wake(index, now));
                if running.is_none() {
                    (running, (preempt_at, act_at)) = switch(&mut scheduler, Reason::Yield, now, &mut harness);
                }
                continue;
            }
            let outgoing = running.expect("a spinner is always runnable");
            let reason = if act_at < preempt_at {
                now = act_at;
                match behaviour(outgoing) {
                    Behaviour::Yielder => Reason::Yield,
                    Behaviour::Sleeper => {
                        timers.push((now + harness.random.below(5 * SLICE), outgoing));
                        Reason::Blocked
                    }
                    Behaviour::Spinner => unreachable!("spinners never yield or block"),
                }
            } else {
                now = preempt_at;
                assert!(scheduler.slice_expired(now));
                Reason::Preempted
            };
            if reason != Reason::Blocked {
                harness.joins(outgoing, now, &scheduler);
            }
            (running, (preempt_at, act_at)) = switch(&mut scheduler, reason, now, &mut harness);
        }

        let is_spinner = |index: usize| behaviour(index) == Behaviour::Spinner;
        let spinners = scheduler.fairness(is_spinner);
        let turns: Vec<u64> =
            (0..DOMAINS).filter(|&index| is_spinner(index)).map(|index| scheduler.account(index).turns).collect();
        let (fewest, most) = (*turns.iter().min().unwrap(), *turns.iter().max().unwrap());
        assert!(most - fewest <= 1, "spinner turns {fewest}..{most}");
        // Every spinner turn but a running one ended in a preemption lasting a slice plus lateness.
        assert!(spinners.preemptions + 1 >= spinners.turns);
        assert!(spinners.min_cycles >= (fewest - 1) * SLICE);
        assert!(spinners.max_cycles <= most * (SLICE + LATENESS));
        let everyone = scheduler.fairness(|_| true);
        assert_eq!(everyone.longest_wait, harness.longest_wait);
        assert!(everyone.longest_wait <= (DOMAINS as u64 - 1) * (SLICE + LATENESS));
        assert_eq!(everyone.idle_cycles, 0, "spinners keep the CPU busy");
        for index in 0..DOMAINS {
            assert!(scheduler.account(index).turns > 0, "d{index} starved");
        }

        let share = |cycles: u64| cycles as f64 * 100.0 / HORIZON as f64;
        for (name, kind) in
            [("spinner", Behaviour::Spinner), ("yielder", Behaviour::Yielder), ("sleeper", Behaviour::Sleeper)]
        {
            let group = scheduler.fairness(|index| behaviour(index) == kind);
            println!(
                "{name}s: {} domains, CPU share {:.3}%..{:.3}% each, {} turns, {} preemptions, longest wait {:.2} slices",
                group.domains,
                share(group.min_cycles),
                share(group.max_cycles),
                group.turns,
                group.preemptions,
                group.longest_wait as f64 / SLICE as f64
            );
        }
        println!("spinner turns {fewest}..{most}; all {}", everyone.display(1_000_000_000));
    }
}
