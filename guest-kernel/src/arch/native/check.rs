//! The native platform's self-check, binary `guest-kernel-native-check` (`cargo xtask
//! test` boots it): it uses the platform only through [`Machine`], as the kernel does,
//! and proves each operation on the way, including what the kernel never asks for (the
//! refusals): the boot information; address
//! spaces (maps, protections, refusals of what may not be mapped); user mode with system
//! calls, demand paging, exceptions, the FS base and x87/SSE state; preemption by the
//! timer with two address spaces alive; idling; console input (when the command line asks
//! for it with `read-console`) with a system call restarted from its saved registers. It
//! powers off with the number after `--` on the command line (0 without), or crashes with
//! code 1 naming the first check that failed.

use crate::arch::machine::{
    Access, AddressSpace, Frame, Machine, PageAccess, PageUpdate, Trap, UserContext, PAGE_SIZE,
};
use alloc::alloc::{alloc_zeroed, Layout};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Where the user programs run.
const CODE: u64 = 0x40_0000;
/// A data page: the FS base points at it; the check writes a process's preemption count
/// at offset 8, which the worker program waits on.
const DATA: u64 = 0x60_0000;
/// Not mapped until the program touches it (demand paging).
const LAZY: u64 = 0x1000_0000;
const STACK: u64 = 0x7fff_ffff_e000;
/// The time slice.
const SLICE_NS: u64 = 10_000_000;
/// How long `read-console` waits for a byte.
const INPUT_WAIT_NS: u64 = 30_000_000_000;

const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_EXIT: u64 = 60;
const SYS_CHECK_FS: u64 = 1000;
const SYS_CHECK_LAZY: u64 = 1001;
const SYS_CHECK_VECTOR: u64 = 1002;
/// The value the data page holds at offset 0, plus the process number.
const FS_MAGIC: u64 = 0x4653_4241_5345_0000;
/// The process's x87/SSE value (xmm0), plus its number.
const VECTOR_MAGIC: u64 = 0x5353_4553_5441_0000;

core::arch::global_asm!(
    ".pushsection .text.native_check_programs, \"ax\", @progbits",
    ".balign 4096",
    ".global native_check_programs_start",
    "native_check_programs_start:",
    // The worker: RDI = its number, RSI = its xmm0 value.
    "native_check_worker:",
    "mov r12, rdi",
    "mov r13, rsi",
    "lea rsi, [rip + 20f]",
    "lea rdx, [rip + 21f]",
    "sub rdx, rsi",
    "mov edi, 1",
    "mov eax, {write}",
    "syscall",
    "mov rdi, qword ptr fs:[0]",
    "mov eax, {check_fs}",
    "syscall",
    "movabs rbx, {lazy}",
    "mov qword ptr [rbx], r12",
    "mov rdi, qword ptr [rbx]",
    "mov eax, {check_lazy}",
    "syscall",
    "movq xmm0, r13",
    // Spin with DF and AC set (flags an interrupt gate leaves as they are).
    "std",
    "pushfq",
    "or qword ptr [rsp], 0x40000",
    "popfq",
    "1:",
    "pause",
    "cmp qword ptr fs:[8], 2",
    "jb 1b",
    "pushfq",
    "pop rsi",
    "cld",
    "movq rdi, xmm0",
    "mov eax, {check_vector}",
    "syscall",
    "lea edi, [r12 + 40]",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    "20:",
    ".ascii \"user: hello from ring 3\\n\"",
    "21:",
    // The probe: RDI selects a fault, RSI is its address.
    "native_check_probe:",
    "cmp edi, 1",
    "je 31f",
    "cmp edi, 2",
    "je 32f",
    "cmp edi, 3",
    "je 33f",
    "cmp edi, 4",
    "je 34f",
    "cmp edi, 5",
    "je 35f",
    "mov rax, qword ptr [rsi]",
    "ud2",
    "31: ud2",
    "32: cli",
    "ud2",
    "33: int3",
    "ud2",
    "34: jmp rsi",
    "35: mov byte ptr [rsi], 1",
    "ud2",
    // The reader: read(0, stack, 1), then write the byte back and exit with it.
    "native_check_reader:",
    "sub rsp, 16",
    "xor edi, edi",
    "mov rsi, rsp",
    "mov edx, 1",
    "mov eax, {read}",
    "syscall",
    "mov edi, 1",
    "mov rsi, rsp",
    "mov edx, 1",
    "mov eax, {write}",
    "syscall",
    "movzx edi, byte ptr [rsp]",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global native_check_programs_end",
    "native_check_programs_end:",
    ".popsection",
    write = const SYS_WRITE,
    read = const SYS_READ,
    exit = const SYS_EXIT,
    check_fs = const SYS_CHECK_FS,
    check_lazy = const SYS_CHECK_LAZY,
    check_vector = const SYS_CHECK_VECTOR,
    lazy = const LAZY,
);

extern "C" {
    static native_check_programs_start: u8;
    static native_check_programs_end: u8;
    static native_check_worker: u8;
    static native_check_probe: u8;
    static native_check_reader: u8;
}

/// The address of a program's entry in user space.
fn entry(symbol: *const u8) -> u64 {
    CODE + (symbol as u64 - (&raw const native_check_programs_start) as u64)
}

fn page_layout() -> Layout {
    Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).expect("a page is a valid layout")
}

/// A zeroed heap page.
fn frame() -> Frame {
    // SAFETY: a non-zero-sized layout. The page is never freed: the check is short.
    let page = unsafe { alloc_zeroed(page_layout()) } as u64;
    assert!(page != 0, "out of memory");
    Frame(page)
}

fn write_frame(frame: Frame, offset: usize, bytes: &[u8]) {
    assert!(offset + bytes.len() <= PAGE_SIZE as usize);
    // SAFETY: a heap page of this check's (so kernel memory, mapped read-write); user
    // mode may write it too, but only while the kernel waits in `enter_user`.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (frame.0 as *mut u8).add(offset), bytes.len()) }
}

fn read_frame(frame: Frame, offset: usize, buffer: &mut [u8]) {
    assert!(offset + buffer.len() <= PAGE_SIZE as usize);
    // SAFETY: as in `write_frame`.
    unsafe { core::ptr::copy_nonoverlapping((frame.0 as *const u8).add(offset), buffer.as_mut_ptr(), buffer.len()) }
}

const READ_ONLY: PageAccess = PageAccess { writable: false, executable: false };
const READ_WRITE: PageAccess = PageAccess { writable: true, executable: false };
const READ_EXECUTE: PageAccess = PageAccess { writable: false, executable: true };

/// A user process of the check: its space, registers and the pages mapped in it.
struct Process {
    number: u64,
    space: AddressSpace,
    context: UserContext,
    pages: Vec<(u64, Frame)>,
    preemptions: u64,
    system_calls: u64,
    exit: Option<u64>,
}

struct Check<'m, M: Machine> {
    machine: &'m M,
    code: Frame,
    failures: u32,
    first_user_entry_ns: Option<u64>,
}

impl<M: Machine> Check<'_, M> {
    fn say(&self, arguments: core::fmt::Arguments<'_>) {
        let mut line = String::new();
        let _ = line.write_fmt(arguments);
        line.push('\n');
        self.machine.console_write(line.as_bytes());
    }

    fn expect(&mut self, ok: bool, what: core::fmt::Arguments<'_>) {
        if ok {
            self.say(format_args!("check: {what} (ok)"));
        } else {
            self.failures += 1;
            self.say(format_args!("check: {what} (FAILED)"));
        }
    }

    fn process(&mut self, number: u64, entry: u64, arguments: [u64; 2]) -> Process {
        let space = self.machine.create_space().expect("create_space");
        let (data, stack) = (frame(), frame());
        write_frame(data, 0, &(FS_MAGIC + number).to_le_bytes());
        let pages = [(CODE, self.code, READ_EXECUTE), (DATA, data, READ_WRITE), (STACK, stack, READ_WRITE)];
        let updates: Vec<PageUpdate> =
            pages.iter().map(|&(address, frame, access)| PageUpdate::Map { address, frame, access }).collect();
        self.machine.update_space(space, &updates).expect("map a process's pages");
        let mut context = UserContext::default();
        context.registers.rip = entry;
        context.registers.rsp = STACK + PAGE_SIZE;
        context.registers.rdi = arguments[0];
        context.registers.rsi = arguments[1];
        context.registers.fs_base = DATA;
        Process {
            number,
            space,
            context,
            pages: pages.iter().map(|&(address, frame, _)| (address, frame)).collect(),
            preemptions: 0,
            system_calls: 0,
            exit: None,
        }
    }

    fn enter(&mut self, process: &mut Process) -> Trap {
        if self.first_user_entry_ns.is_none() {
            self.first_user_entry_ns = Some(self.machine.now_ns());
        }
        self.machine.enter_user(process.space, &mut process.context)
    }

    /// Enters user mode until something other than an interrupt stops it (the probe's
    /// runs, which a timer left armed may interrupt).
    fn enter_past_interrupts(&mut self, process: &mut Process) -> Trap {
        loop {
            match self.enter(process) {
                Trap::Interrupt => {}
                trap => return trap,
            }
        }
    }

    /// The frame behind `address` in `process`.
    fn frame_at(process: &Process, address: u64) -> Option<Frame> {
        let page = address & !(PAGE_SIZE - 1);
        process.pages.iter().find(|&&(mapped, _)| mapped == page).map(|&(_, frame)| frame)
    }

    /// Copies user memory through the frames (never through user addresses).
    fn copy_from_user(process: &Process, address: u64, length: u64) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        for offset in 0..length {
            let at = address.checked_add(offset)?;
            let frame = Self::frame_at(process, at)?;
            let mut byte = [0u8];
            read_frame(frame, (at % PAGE_SIZE) as usize, &mut byte);
            bytes.push(byte[0]);
        }
        Some(bytes)
    }

    /// Serves one system call (the result goes in RAX; an exit is recorded).
    fn system_call(&mut self, process: &mut Process) {
        process.system_calls += 1;
        let registers = process.context.registers;
        let (number, argument) = (registers.rax, registers.rdi);
        let result = match number {
            SYS_WRITE => match Self::copy_from_user(process, registers.rsi, registers.rdx) {
                Some(bytes) => {
                    self.machine.console_write(&bytes);
                    bytes.len() as u64
                }
                None => (-14i64) as u64,
            },
            SYS_CHECK_FS => {
                let expected = FS_MAGIC + process.number;
                self.expect(
                    argument == expected,
                    format_args!("process {}: fs:[0] through the FS base is {argument:#x}", process.number),
                );
                0
            }
            SYS_CHECK_LAZY => {
                self.expect(
                    argument == process.number,
                    format_args!("process {}: a demand-mapped page holds what it wrote", process.number),
                );
                0
            }
            SYS_CHECK_VECTOR => {
                self.expect(
                    argument == VECTOR_MAGIC + process.number,
                    format_args!(
                        "process {}: xmm0 survived {} preemptions and the other process's xmm0",
                        process.number, process.preemptions
                    ),
                );
                const DIRECTION_AND_ALIGNMENT: u64 = (1 << 10) | (1 << 18);
                self.expect(
                    registers.rsi & DIRECTION_AND_ALIGNMENT == DIRECTION_AND_ALIGNMENT,
                    format_args!(
                        "process {}: its DF and AC flags survived the preemptions (rflags {:#x})",
                        process.number, registers.rsi
                    ),
                );
                0
            }
            SYS_EXIT => {
                process.exit = Some(argument);
                0
            }
            _ => (-38i64) as u64,
        };
        process.context.registers.rax = result;
    }

    /// A copy of a kilobyte (`rep movs` in the kernel's memcpy, which runs backwards with
    /// DF set) arrives whole.
    fn copy_works_after_preemption(&mut self, number: u64) {
        let source: Vec<u8> = (0..1024u32).map(|index| (index % 251) as u8).collect();
        let mut target = alloc::vec![0u8; core::hint::black_box(1024)];
        target.copy_from_slice(core::hint::black_box(&source));
        if target != source {
            self.expect(false, format_args!("process {number}: a copy in the kernel after a preemption"));
        }
    }

    /// Runs the workers round-robin, `SLICE_NS` each, until both exit.
    fn run_workers(&mut self, workers: &mut [Process; 2]) {
        let mut current = 0;
        let mut demand_faults = 0;
        while workers.iter().any(|worker| worker.exit.is_none()) {
            if workers[current].exit.is_some() {
                current = 1 - current;
                continue;
            }
            let deadline = self.machine.now_ns() + SLICE_NS;
            self.machine.set_timer(deadline);
            loop {
                let worker = &mut workers[current];
                match self.enter(worker) {
                    Trap::SystemCall => {
                        self.system_call(worker);
                        if worker.exit.is_some() {
                            break;
                        }
                    }
                    Trap::PageFault { address, access: Access::Write, present: false }
                        if address & !(PAGE_SIZE - 1) == LAZY =>
                    {
                        let page = frame();
                        let update = PageUpdate::Map { address: LAZY, frame: page, access: READ_WRITE };
                        self.machine.update_space(worker.space, &[update]).expect("map the demanded page");
                        worker.pages.push((LAZY, page));
                        demand_faults += 1;
                    }
                    Trap::Interrupt if self.machine.now_ns() >= deadline => {
                        // The worker spins with DF set: the kernel must not run with it.
                        self.copy_works_after_preemption(worker.number);
                        worker.preemptions += 1;
                        let data = Self::frame_at(worker, DATA).expect("the data page");
                        write_frame(data, 8, &worker.preemptions.to_le_bytes());
                        // The other worker runs next and replaces the vector registers.
                        self.machine.save_extended(&mut worker.context);
                        break;
                    }
                    Trap::Interrupt => {}
                    other => {
                        self.expect(false, format_args!("process {}: unexpected {other:?}", worker.number));
                        worker.exit = Some(u64::MAX);
                        break;
                    }
                }
            }
            current = 1 - current;
        }
        for worker in workers.iter() {
            self.expect(
                worker.exit == Some(40 + worker.number),
                format_args!(
                    "process {}: exit code {:?} after {} system calls, preempted {} times",
                    worker.number, worker.exit, worker.system_calls, worker.preemptions
                ),
            );
        }
        self.expect(demand_faults == 2, format_args!("{demand_faults} demand faults served, one per process"));
    }

    /// Faults the probe program makes, each ending the run with the trap it should.
    fn probe(&mut self) {
        let kernel_address = self.code.0;
        let cases: [(u64, u64, Trap, &str); 6] = [
            (
                0,
                kernel_address,
                Trap::PageFault { address: kernel_address, access: Access::Read, present: true },
                "a read of kernel memory",
            ),
            (1, 0, Trap::Exception { vector: 6, error_code: 0 }, "ud2"),
            (2, 0, Trap::Exception { vector: 13, error_code: 0 }, "cli"),
            (3, 0, Trap::Exception { vector: 3, error_code: 0 }, "int3"),
            (4, DATA, Trap::PageFault { address: DATA, access: Access::Execute, present: true }, "a jump to data"),
            (5, CODE, Trap::PageFault { address: CODE, access: Access::Write, present: true }, "a write to code"),
        ];
        let mut process = self.process(3, entry(&raw const native_check_probe), [0, 0]);
        let initial = process.context.clone();
        for (selector, address, expected, what) in cases {
            process.context = initial.clone();
            process.context.registers.rdi = selector;
            process.context.registers.rsi = address;
            let trap = self.enter_past_interrupts(&mut process);
            self.expect(trap == expected, format_args!("user mode: {what} ends the run with {trap:?}"));
        }
        // Contexts the platform must refuse to load.
        process.context = initial.clone();
        process.context.registers.rip = 0x8000_0000_0000_0000;
        let trap = self.enter(&mut process);
        self.expect(
            trap == Trap::Exception { vector: 13, error_code: 0 },
            format_args!("a non-canonical RIP is refused with {trap:?}"),
        );
        process.context = initial.clone();
        let mut extended = process.context.extended().clone();
        extended.0[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        process.context.set_extended(extended);
        let trap = self.enter(&mut process);
        self.expect(
            trap == Trap::Exception { vector: 13, error_code: 0 },
            format_args!("an MXCSR with reserved bits is refused with {trap:?}"),
        );
        process.context = initial;
        let trap = self.machine.enter_user(AddressSpace(process.space.0 + PAGE_SIZE), &mut process.context);
        self.expect(
            trap == Trap::Exception { vector: 13, error_code: 0 },
            format_args!("an address space the platform did not make is refused with {trap:?}"),
        );
        self.refusals(process.space);
        self.machine.destroy_space(process.space).expect("destroy the probe's space");
    }

    /// Page updates the platform must refuse.
    fn refusals(&mut self, space: AddressSpace) {
        let page = frame();
        let cases = [
            (PageUpdate::Map { address: CODE, frame: page, access: READ_ONLY }, "a page mapped twice"),
            (PageUpdate::Map { address: CODE + 1, frame: page, access: READ_ONLY }, "an unaligned address"),
            (
                PageUpdate::Map { address: 0xffff_8000_0000_0000, frame: page, access: READ_ONLY },
                "a kernel-half address",
            ),
            (PageUpdate::Map { address: LAZY, frame: Frame(0x1000), access: READ_ONLY }, "a frame outside the heap"),
            (PageUpdate::Map { address: LAZY, frame: Frame(page.0 + 8), access: READ_ONLY }, "an unaligned frame"),
            (
                // The space's own PML4 (a heap page: the native platform names spaces by it).
                PageUpdate::Map {
                    address: LAZY,
                    frame: Frame(super::paging::virtual_address(space.0)),
                    access: READ_ONLY,
                },
                "a page-table frame",
            ),
            (PageUpdate::Protect { address: LAZY, access: READ_ONLY }, "protecting a hole"),
            (PageUpdate::Unmap { address: LAZY }, "unmapping a hole"),
        ];
        for (update, what) in cases {
            let result = self.machine.update_space(space, &[update]);
            self.expect(
                matches!(result, Err((0, _))),
                format_args!("update_space refuses {what}: {:?}", result.map_err(|(_, error)| error)),
            );
        }
        // Protect and unmap work on what is mapped, in order, with the count of those applied.
        let batch = [
            PageUpdate::Map { address: LAZY, frame: page, access: READ_WRITE },
            PageUpdate::Protect { address: LAZY, access: READ_ONLY },
            PageUpdate::Unmap { address: LAZY },
            PageUpdate::Unmap { address: LAZY },
        ];
        let result = self.machine.update_space(space, &batch);
        self.expect(
            matches!(result, Err((3, _))),
            format_args!("a batch stops at its first failure, after 3 applied: {:?}", result.map(|()| 0)),
        );
        let gone = self.machine.destroy_space(AddressSpace(space.0 + PAGE_SIZE));
        self.expect(gone.is_err(), format_args!("destroying an unknown space is refused: {gone:?}"));
    }

    /// `read-console`: a process reads one byte; while none has come, its system call
    /// waits in `idle` and is restarted from its saved registers.
    fn read_console(&mut self) {
        self.say(format_args!("check: type a key (read-console)"));
        let mut process = self.process(4, entry(&raw const native_check_reader), [0, 0]);
        let deadline = self.machine.now_ns() + INPUT_WAIT_NS;
        let mut restarts = 0;
        let byte = loop {
            match self.enter(&mut process) {
                Trap::SystemCall if process.context.registers.rax == SYS_READ => {
                    let mut byte = [0u8];
                    if self.machine.console_read(&mut byte) == 1 {
                        let buffer = process.context.registers.rsi;
                        let frame = Self::frame_at(&process, buffer).expect("the reader's stack");
                        write_frame(frame, (buffer % PAGE_SIZE) as usize, &byte);
                        process.context.registers.rax = 1;
                        continue;
                    }
                    if self.machine.now_ns() >= deadline {
                        break None;
                    }
                    // Back to the `syscall` instruction, with its number: a restart.
                    process.context.registers.rip -= 2;
                    process.context.registers.rax = SYS_READ;
                    restarts += 1;
                    self.machine.set_timer(deadline);
                    self.machine.idle();
                }
                Trap::SystemCall => {
                    self.system_call(&mut process);
                    if let Some(code) = process.exit {
                        break Some(code);
                    }
                }
                Trap::Interrupt => {}
                other => {
                    self.expect(false, format_args!("reader: unexpected {other:?}"));
                    break None;
                }
            }
        };
        self.say(format_args!(""));
        self.expect(
            byte.is_some(),
            format_args!("a console byte {byte:?} read after {restarts} restarted system call(s)"),
        );
        self.machine.destroy_space(process.space).expect("destroy the reader's space");
    }
}

/// Days since 1970-01-01 as (year, month, day).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let mut days = days;
    let mut year = 1970;
    loop {
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let length = if leap { 366 } else { 365 };
        if days < length {
            let lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            let mut month = 1;
            for length in lengths {
                if days < length {
                    break;
                }
                days -= length;
                month += 1;
            }
            return (year, month, days + 1);
        }
        days -= length;
        year += 1;
    }
}

/// Runs the check; the power-off code.
pub fn run(machine: &impl Machine) -> u32 {
    let entered = machine.now_ns();
    let info = machine.boot_info();
    let mut description = String::new();
    let _ = machine.describe(&mut description);
    let code_frame = frame();
    // SAFETY: the linker symbols bound the programs' bytes in the kernel image's text.
    let programs = unsafe {
        let start = &raw const native_check_programs_start;
        core::slice::from_raw_parts(start, (&raw const native_check_programs_end).offset_from(start) as usize)
    };
    assert!(programs.len() <= PAGE_SIZE as usize, "the check's programs fit one page");
    write_frame(code_frame, 0, programs);
    let mut check = Check { machine, code: code_frame, failures: 0, first_user_entry_ns: None };
    check.say(format_args!("guest-kernel {}: {description}", env!("CARGO_PKG_VERSION")));
    check.say(format_args!("check: the kernel's main function began {} us after the PVH entry", entered / 1000));
    check.say(format_args!(
        "check: boot info: domain {:?}, {} MiB, command line {:?}, initramfs {} bytes{}",
        info.domain_id,
        info.memory_bytes >> 20,
        info.command_line,
        info.initramfs.len(),
        if info.initramfs.starts_with(b"070701") { " (cpio newc)" } else { "" }
    ));
    match machine.wallclock_at_boot_ns() {
        Some(ns) => {
            let seconds = (ns + machine.now_ns()) / 1_000_000_000;
            let (year, month, day) = civil_date(seconds / 86_400);
            let time = seconds % 86_400;
            check.say(format_args!(
                "check: wallclock {year}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
                time / 3600,
                time / 60 % 60,
                time % 60
            ));
        }
        None => check.expect(false, format_args!("the platform has a wallclock")),
    }

    let start = machine.now_ns();
    machine.set_timer(start + 5_000_000);
    machine.idle();
    let slept = machine.now_ns() - start;
    check.expect(slept >= 5_000_000, format_args!("idle until a timer 5 ms ahead took {} us", slept / 1000));
    let start = machine.now_ns();
    machine.set_timer(0);
    machine.idle();
    let waited = machine.now_ns() - start;
    check.expect(waited < 5_000_000, format_args!("a deadline in the past ends idle at once ({} us)", waited / 1000));

    let mut workers = [
        check.process(1, entry(&raw const native_check_worker), [1, VECTOR_MAGIC + 1]),
        check.process(2, entry(&raw const native_check_worker), [2, VECTOR_MAGIC + 2]),
    ];
    check.run_workers(&mut workers);
    if let Some(ns) = check.first_user_entry_ns {
        check.say(format_args!("check: first user instruction {} us after the PVH entry", ns / 1000));
    }
    for worker in workers {
        check.machine.destroy_space(worker.space).expect("destroy a worker's space");
    }
    check.probe();

    let words: Vec<&str> = info.command_line.split(' ').filter(|word| !word.is_empty()).collect();
    let (options, arguments) = match words.iter().position(|&word| word == "--") {
        Some(dashes) => (&words[..dashes], &words[dashes + 1..]),
        None => (&words[..], &[][..]),
    };
    if options.contains(&"read-console") {
        check.read_console();
    }
    let code = arguments.first().map_or(Some(0), |word| word.parse::<u32>().ok());
    check.expect(code.is_some(), format_args!("the first word after -- is the power-off code: {arguments:?}"));
    check.say(format_args!(
        "check: {} failure(s); {} ms since the PVH entry",
        check.failures,
        machine.now_ns() / 1_000_000
    ));
    match code {
        Some(code) if check.failures == 0 => code,
        _ => machine.crash(1),
    }
}
