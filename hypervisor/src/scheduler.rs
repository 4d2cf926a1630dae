//! Which domain runs next: round robin over the runnable ones, switching only on `yield`
//! and `shutdown` until timers bring preemption.

/// Picks the first runnable slot after `current`, wrapping around and ending with
/// `current` itself; `None` when nothing is runnable.
pub fn next_runnable(runnable: &[bool], current: usize) -> Option<usize> {
    let count = runnable.len();
    (1..=count).map(|step| (current + step) % count).find(|&index| runnable[index])
}

#[cfg(test)]
mod tests {
    use super::next_runnable;

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
