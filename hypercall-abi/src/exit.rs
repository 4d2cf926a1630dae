//! The hypervisor's exit status (SPEC.md §10): what QEMU's exit device carries when the
//! last domain is gone, summarizing every domain's outcome. The worst outcome wins.

/// One summarized exit status. The hypervisor writes `v + 16` to QEMU's `isa-debug-exit`,
/// which turns a written value `w` into the process status `2w + 1`; `cargo xtask run`
/// reports `v` itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ExitStatus(pub u8);

impl ExitStatus {
    /// Every domain shut down with poweroff and code 0.
    pub const SUCCESS: ExitStatus = ExitStatus(0);
    /// Some domain powered off with a nonzero code.
    pub const NONZERO_CODE: ExitStatus = ExitStatus(1);
    /// Some domain shut down with reason crash.
    pub const CRASHED: ExitStatus = ExitStatus(2);
    /// The hypervisor killed some domain (fault, bad state).
    pub const KILLED: ExitStatus = ExitStatus(3);
    /// Some image or domain specification was refused before it ran.
    pub const REFUSED: ExitStatus = ExitStatus(4);
    /// No domain could be started at all (no images, bad command line).
    pub const NOTHING_TO_RUN: ExitStatus = ExitStatus(5);
    /// The hypervisor itself panicked.
    pub const HYPERVISOR_PANIC: ExitStatus = ExitStatus(100);

    /// Port of QEMU's `isa-debug-exit` device.
    pub const DEBUG_EXIT_PORT: u16 = 0xf4;

    /// Combines two outcomes: the more severe wins.
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        self.max(other)
    }

    /// Added to the status before it is written to the device, so that QEMU's process
    /// status `2 * (v + 16) + 1` (33 for success) can never be QEMU's own error status 1.
    pub const DEVICE_BIAS: u8 = 16;

    /// The value the hypervisor writes to the device.
    pub const fn device_value(self) -> u32 {
        self.0 as u32 + Self::DEVICE_BIAS as u32
    }

    /// QEMU's process exit status for this value.
    pub const fn qemu_status(self) -> i32 {
        (self.device_value() as i32) * 2 + 1
    }

    /// Recovers the hypervisor's status from QEMU's, if QEMU could have exited through the
    /// device with it (an odd status of at least 33).
    pub const fn from_qemu_status(status: i32) -> Option<ExitStatus> {
        let bias = Self::DEVICE_BIAS as i32;
        if status > 2 * bias && status % 2 == 1 && status <= 255 {
            Some(ExitStatus(((status - 1) / 2 - bias) as u8))
        } else {
            None
        }
    }

    /// Human name, for summaries.
    pub const fn describe(self) -> &'static str {
        match self.0 {
            0 => "all domains powered off with code 0",
            1 => "a domain powered off with a nonzero code",
            2 => "a domain crashed",
            3 => "a domain was killed by the hypervisor",
            4 => "an image or domain was refused",
            5 => "nothing to run",
            100 => "hypervisor panic",
            _ => "unknown status",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_round_trip() {
        for status in [ExitStatus::SUCCESS, ExitStatus::KILLED, ExitStatus::HYPERVISOR_PANIC] {
            assert_eq!(ExitStatus::from_qemu_status(status.qemu_status()), Some(status));
        }
        assert_eq!(ExitStatus::SUCCESS.qemu_status(), 33);
        assert_eq!(ExitStatus::HYPERVISOR_PANIC.qemu_status(), 233);
        // QEMU's own statuses: 1 for an error, 0 for a guest-requested exit without the device.
        for qemu_itself in [0, 1, 2, 3, 31, 256] {
            assert_eq!(ExitStatus::from_qemu_status(qemu_itself), None, "{qemu_itself}");
        }
    }

    #[test]
    fn worst_wins() {
        assert_eq!(ExitStatus::SUCCESS.worst(ExitStatus::CRASHED), ExitStatus::CRASHED);
        assert_eq!(ExitStatus::REFUSED.worst(ExitStatus::KILLED), ExitStatus::REFUSED);
    }

    #[test]
    fn each_status_has_its_own_summary() {
        // SPEC.md §10 words these as table meanings, not fixed text; the summaries are
        // what `cargo xtask run` prints, pinned so a change to one is deliberate.
        let texts = [
            (ExitStatus::SUCCESS, "all domains powered off with code 0"),
            (ExitStatus::NONZERO_CODE, "a domain powered off with a nonzero code"),
            (ExitStatus::CRASHED, "a domain crashed"),
            (ExitStatus::KILLED, "a domain was killed by the hypervisor"),
            (ExitStatus::REFUSED, "an image or domain was refused"),
            (ExitStatus::NOTHING_TO_RUN, "nothing to run"),
            (ExitStatus::HYPERVISOR_PANIC, "hypervisor panic"),
            (ExitStatus(6), "unknown status"),
        ];
        for (status, text) in texts {
            assert_eq!(status.describe(), text, "{status:?}");
        }
        assert_eq!(ExitStatus::DEBUG_EXIT_PORT, 0xf4);
        assert_eq!(ExitStatus::SUCCESS.device_value(), 16);
    }
}
