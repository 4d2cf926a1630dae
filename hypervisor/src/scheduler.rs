//! Which domain runs next: round robin over the runnable ones, switching only on `yield`
//! and `shutdown` until timers bring preemption.

/// Picks the first of `count` slots after `current` for which `runnable` holds, wrapping
/// around and ending with `current` itself; `None` when nothing is runnable.
pub fn next_runnable(count: usize, current: usize, runnable: impl Fn(usize) -> bool) -> Option<usize> {
    (1..=count).map(|step| (current + step) % count).find(|&index| runnable(index))
}

#[cfg(test)]
mod tests {
    fn next_runnable(runnable: &[bool], current: usize) -> Option<usize> {
        super::next_runnable(runnable.len(), current, |index| runnable[index])
    }

    #[test]
    fn round_robin() {
        assert_eq!(next_runnable(&[true, true, true], 0), Some(1));
        assert_eq!(next_runnable(&[true, true, true], 2), Some(0));
        assert_eq!(next_runnable(&[true, false, true], 0), Some(2));
        assert_eq!(next_runnable(&[true, false, false], 0), Some(0), "alone: yield returns to the caller");
        assert_eq!(next_runnable(&[false, false, false], 1), None);
        assert_eq!(next_runnable(&[], 0), None);
    }
}
