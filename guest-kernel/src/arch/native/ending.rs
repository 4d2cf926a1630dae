//! How a native run ends, as `cargo xtask run --native` reads it: the kernel prints one
//! last console line, `native: power off, code N` or `native: crash, code N`, then writes
//! [`Ending::device_value`] to QEMU's `isa-debug-exit` device at [`DEBUG_EXIT_PORT`],
//! which ends QEMU with the process status `(value << 1) | 1`.
//!
//! A process status has room for 7 bits of that value only, and QEMU's own statuses (0
//! and 1) must stay apart from the kernel's; so the status carries the kind of ending
//! (bit 6 of the value: power off, bit 5: crash) and the code's low bits, and the console
//! line carries the whole code. xtask believes a line only when the status agrees with it,
//! which also means a user program cannot fake an ending by printing the line.
//!
//! Shared word for word by the kernel and xtask (`xtask/src/native.rs` includes this
//! file), so the two cannot disagree; pure, and host-tested there.

/// Port of QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What starts the kernel's last console line.
pub const LINE_PREFIX: &str = "native: ";

/// The ways a native run ends.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `Machine::shutdown`: the kernel's work is done.
    PowerOff,
    /// `Machine::crash`, a panic, or a boot that could not finish.
    Crash,
}

impl Ending {
    /// The line's words between [`LINE_PREFIX`] and `, code N`.
    pub const fn words(self) -> &'static str {
        match self {
            Ending::PowerOff => "power off",
            Ending::Crash => "crash",
        }
    }

    /// The value written to the device for this ending with `code`: the kind's bit and
    /// as many low bits of the code as fit below it.
    pub const fn device_value(self, code: u32) -> u32 {
        match self {
            Ending::PowerOff => 0x40 | (code & 0x3f),
            Ending::Crash => 0x20 | (code & 0x1f),
        }
    }

    /// The ending and the code's low bits that QEMU's process `status` carries, if the
    /// device wrote it.
    pub const fn from_status(status: i32) -> Option<(Ending, u32)> {
        if status < 0 || status > 255 || status % 2 == 0 {
            return None;
        }
        let value = (status as u32 - 1) / 2;
        if value & 0x40 != 0 {
            Some((Ending::PowerOff, value & 0x3f))
        } else if value & 0x20 != 0 {
            Some((Ending::Crash, value & 0x1f))
        } else {
            None
        }
    }

    /// True if `code` is the one a status with these low bits came from.
    pub const fn agrees(self, code: u32, low_bits: u32) -> bool {
        self.device_value(code) == self.device_value(low_bits)
    }
}
