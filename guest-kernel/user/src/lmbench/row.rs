//! The rows: their names on the wire (`--row`, the output lines) and in the table, in
//! the order a run without `--row` measures them.

/// One measured operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// `getppid` as a raw system call (libc cannot answer it from a cache).
    NullSyscall,
    /// `write` of 1 byte to `/dev/null`.
    WriteDevnull,
    /// `fork`, the child `_exit(0)`s, the parent `wait4`s.
    ForkExit,
    /// `fork`, the child `execve`s `lmbench-true`, the parent `wait4`s.
    ForkExec,
    /// 1 byte to a second process and 1 byte back, through two pipes.
    PipeRoundtrip,
    /// lmbench's `lat_ctx` with 2 processes and no data: a token around a ring of two
    /// processes through pipes, per switch.
    CtxSwitch,
    /// The first write to a page of anonymous memory, per page.
    PageFault,
    /// `mmap` of 512 anonymous pages with `MAP_POPULATE`, then `munmap`.
    Mmap512,
    /// `clock_gettime(CLOCK_MONOTONIC)` through libc (the vDSO where the kernel has one).
    ClockGettime,
}

/// Every row, in the order of a full run.
pub const ROWS: [Row; 9] = [
    Row::NullSyscall,
    Row::WriteDevnull,
    Row::ForkExit,
    Row::ForkExec,
    Row::PipeRoundtrip,
    Row::CtxSwitch,
    Row::PageFault,
    Row::Mmap512,
    Row::ClockGettime,
];

impl Row {
    /// The name in `--row` and in the output lines.
    pub fn wire(self) -> &'static str {
        match self {
            Row::NullSyscall => "null_syscall",
            Row::WriteDevnull => "write_devnull",
            Row::ForkExit => "fork_exit",
            Row::ForkExec => "fork_exec",
            Row::PipeRoundtrip => "pipe_roundtrip",
            Row::CtxSwitch => "ctx_switch",
            Row::PageFault => "page_fault",
            Row::Mmap512 => "mmap_512",
            Row::ClockGettime => "clock_gettime",
        }
    }

    /// The name in `cargo xtask bench --kernel`'s table.
    pub fn table_name(self) -> &'static str {
        match self {
            Row::NullSyscall => "null syscall",
            Row::WriteDevnull => "write devnull",
            Row::ForkExit => "fork exit",
            Row::ForkExec => "fork exec",
            Row::PipeRoundtrip => "pipe roundtrip",
            Row::CtxSwitch => "ctx switch",
            Row::PageFault => "page fault",
            Row::Mmap512 => "mmap 512",
            Row::ClockGettime => "clock_gettime",
        }
    }

    /// The row a wire name stands for.
    pub fn from_wire(wire: &str) -> Option<Row> {
        ROWS.into_iter().find(|row| row.wire() == wire)
    }

    /// Timed iterations when `--iterations` does not say: enough for a stable median and
    /// a p99 over at least 200 samples, few enough that a full run takes seconds on
    /// guest-kernel under QEMU's TCG, where a fork costs millions of cycles.
    pub fn default_iterations(self) -> usize {
        match self {
            Row::NullSyscall | Row::WriteDevnull | Row::ClockGettime => 10_000,
            Row::PipeRoundtrip | Row::CtxSwitch => 2_000,
            Row::PageFault => 4_096,
            Row::ForkExit | Row::ForkExec | Row::Mmap512 => 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_unique_words_and_found_again() {
        for row in ROWS {
            assert_eq!(Row::from_wire(row.wire()), Some(row));
            assert!(row.wire().bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_'));
            assert_eq!(row.table_name().replace(' ', "_"), row.wire(), "the table name is the wire name spelled out");
            assert!(row.default_iterations() >= 200);
        }
        assert_eq!(Row::from_wire("null syscall"), None);
        assert_eq!(Row::from_wire(""), None);
    }
}
