//! The kernel's random numbers (`getrandom`, `AT_RANDOM`): xoshiro256** seeded from the
//! clocks at boot and stirred with the clock at each use. Not cryptographic — neither
//! platform offers an entropy source the kernel trusts — but never repeating between
//! boots that start at different times, which is what libc's stack protector and hash
//! seeds need from it.

/// The generator.
pub struct Random {
    state: [u64; 4],
}

fn split_mix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Random {
    /// A generator seeded with `seed`.
    pub fn new(mut seed: u64) -> Random {
        Random { state: [split_mix(&mut seed), split_mix(&mut seed), split_mix(&mut seed), split_mix(&mut seed)] }
    }

    /// Mixes `value` (e.g. the clock now) into the state.
    pub fn stir(&mut self, value: u64) {
        self.state[0] ^= value;
        let _ = self.next();
    }

    /// The next 64 bits.
    pub fn next(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= t;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// Fills `bytes`.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
