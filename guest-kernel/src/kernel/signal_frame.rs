//! The signal frame: what delivering a signal to a handler writes on the user stack, and
//! what `rt_sigreturn` reads back, in Linux's x86-64 layout (`struct rt_sigframe`: the
//! return address, a `ucontext` whose `sigcontext` holds the interrupted registers, the
//! `siginfo`, and the x87/SSE state), because libc's restorer and `SA_SIGINFO` handlers
//! read it there.
//!
//! Everything read back is an allegation: the handler may have rewritten the frame. The
//! flags keep only what user code may set, the vector state gets a valid MXCSR and XSAVE
//! header (a bad one would fault the platform's restore), and a non-canonical RIP is left
//! to the platform, which refuses it with a fault the process dies of.

use guest_kernel_core::linux::Errno;
use guest_kernel_core::signal::{Signal, SignalSet};
use guest_kernel_core::user_memory::UserMemory;

use crate::arch::machine::{ExtendedState, UserContext, UserRegisters, EXTENDED_STATE_BYTES};

/// Bytes below the interrupted RSP that user code may use without moving it (the
/// System V red zone): the frame goes below them.
const RED_ZONE: u64 = 128;
/// `struct ucontext` offsets (from the frame's ucontext).
const UCONTEXT_BYTES: u64 = 8 + 8 + 24 + 256 + 8;
const MCONTEXT_OFFSET: u64 = 40;
const SIGMASK_OFFSET: u64 = MCONTEXT_OFFSET + 256;
/// `struct siginfo`.
const SIGINFO_BYTES: u64 = 128;
/// Where in `sigcontext` the vector-state pointer is: the word after cr2 (the 18
/// registers, the segment word, err, trapno, oldmask, cr2), where Linux puts it and where
/// glibc's `uc_mcontext.fpregs` reads it.
const FPSTATE_POINTER: usize = 23 * 8;
/// The RFLAGS bits user code owns: CF, PF, AF, ZF, SF, TF, DF, OF, AC, ID (and bit 1).
const USER_FLAGS: u64 = 0x0024_0dd5;
/// `uc_flags`: the frame holds the vector state (UC_FP_XSTATE is not claimed: the state
/// is restored from the legacy area and header we write).
const UC_FLAGS: u64 = 0;

/// Extra information a `SA_SIGINFO` handler gets.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Information {
    /// `si_code`.
    pub code: i32,
    /// The sender (kill) or the child (SIGCHLD).
    pub pid: u32,
    /// The faulting address (SIGSEGV, SIGBUS).
    pub address: u64,
    /// SIGCHLD's status.
    pub status: i32,
}

fn registers_to_words(registers: &UserRegisters) -> [u64; 18] {
    let r = registers;
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp,
        r.rip, r.rflags,
    ]
}

fn words_to_registers(words: &[u64; 18], registers: &mut UserRegisters) {
    let r = registers;
    [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp] = [
        words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7], words[8], words[9], words[10],
        words[11], words[12], words[13], words[14], words[15],
    ];
    r.rip = words[16];
    r.rflags = (words[17] & USER_FLAGS) | 0x202;
}

/// Makes saved vector state safe to restore: MXCSR's reserved bits clear, the XSAVE
/// header naming only x87, SSE and AVX, in the standard format.
pub fn sanitize(state: &mut ExtendedState) {
    let bytes = &mut state.0;
    let mxcsr = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) & 0xffff;
    bytes[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    // MXCSR_MASK is ignored on restore; the XSAVE header: XSTATE_BV ⊆ {x87, SSE, AVX},
    // XCOMP_BV and the rest zero.
    let header = &mut bytes[512..576];
    header[0] &= 0b111;
    header[1..].fill(0);
}

/// Writes the frame for `signal` below the interrupted stack and points `context` at the
/// handler: RDI = signal, RSI = &siginfo, RDX = &ucontext, RSP at the return address.
/// The context's extended state must be current (`Machine::save_extended`).
pub fn deliver(
    memory: &mut dyn UserMemory,
    context: &mut UserContext,
    signal: Signal,
    handler: u64,
    restorer: u64,
    saved_mask: SignalSet,
    information: &Information,
) -> Result<(), Errno> {
    let top = context.registers.rsp.checked_sub(RED_ZONE).ok_or(Errno::EFAULT)?;
    let fpstate = top.checked_sub(EXTENDED_STATE_BYTES as u64).ok_or(Errno::EFAULT)? & !63;
    let frame_bytes = 8 + UCONTEXT_BYTES + SIGINFO_BYTES;
    // At the handler's first instruction RSP + 8 is 16-byte aligned, as after a call.
    let frame = (fpstate.checked_sub(frame_bytes).ok_or(Errno::EFAULT)? & !15) - 8;
    let ucontext = frame + 8;
    let siginfo = ucontext + UCONTEXT_BYTES;

    memory.write(fpstate, &context.extended().0)?;

    let mut mcontext = [0u8; 256];
    for (index, word) in registers_to_words(&context.registers).iter().enumerate() {
        mcontext[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    // cs, gs, fs, ss (u16 each): the user code selector Linux reports.
    mcontext[144..146].copy_from_slice(&0x33u16.to_le_bytes());
    mcontext[150..152].copy_from_slice(&0x2bu16.to_le_bytes());
    mcontext[176..184].copy_from_slice(&information.address.to_le_bytes()); // cr2
    mcontext[FPSTATE_POINTER..FPSTATE_POINTER + 8].copy_from_slice(&fpstate.to_le_bytes());
    let mut head = [0u8; 40];
    head[0..8].copy_from_slice(&UC_FLAGS.to_le_bytes());
    // uc_link 0; uc_stack: no alternate stack (SS_DISABLE = 2).
    head[24..28].copy_from_slice(&2u32.to_le_bytes());
    memory.write(ucontext, &head)?;
    memory.write(ucontext + MCONTEXT_OFFSET, &mcontext)?;
    memory.write(ucontext + SIGMASK_OFFSET, &saved_mask.0.to_le_bytes())?;

    let mut info = [0u8; SIGINFO_BYTES as usize];
    info[0..4].copy_from_slice(&signal.number().to_le_bytes());
    info[8..12].copy_from_slice(&information.code.to_le_bytes());
    if information.address != 0 {
        info[16..24].copy_from_slice(&information.address.to_le_bytes());
    } else {
        info[16..20].copy_from_slice(&information.pid.to_le_bytes());
        info[24..28].copy_from_slice(&information.status.to_le_bytes());
    }
    memory.write(siginfo, &info)?;
    memory.write(frame, &restorer.to_le_bytes())?;

    let registers = &mut context.registers;
    registers.rsp = frame;
    registers.rip = handler;
    registers.rdi = u64::from(signal.number());
    registers.rsi = siginfo;
    registers.rdx = ucontext;
    registers.rax = 0;
    // The handler starts with DF clear and TF off, as the ABI and Linux give it.
    registers.rflags &= !(0x400 | 0x100);
    Ok(())
}

/// `rt_sigreturn`: restores the registers and vector state the frame holds (the frame
/// starts 8 bytes below the RSP the restorer's `syscall` left, the return address having
/// been popped) and returns the mask to restore.
pub fn restore(memory: &dyn UserMemory, context: &mut UserContext) -> Result<SignalSet, Errno> {
    let frame = context.registers.rsp.checked_sub(8).ok_or(Errno::EFAULT)?;
    let ucontext = frame + 8;
    let mut mcontext = [0u8; 256];
    memory.read(ucontext + MCONTEXT_OFFSET, &mut mcontext)?;
    let mut mask = [0u8; 8];
    memory.read(ucontext + SIGMASK_OFFSET, &mut mask)?;
    let mut words = [0u64; 18];
    for (index, word) in words.iter_mut().enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&mcontext[index * 8..index * 8 + 8]);
        *word = u64::from_le_bytes(bytes);
    }
    let mut pointer = [0u8; 8];
    pointer.copy_from_slice(&mcontext[FPSTATE_POINTER..FPSTATE_POINTER + 8]);
    let fpstate = u64::from_le_bytes(pointer);
    let mut extended = ExtendedState::initial();
    if fpstate != 0 {
        memory.read(fpstate, &mut extended.0)?;
        sanitize(&mut extended);
    }
    words_to_registers(&words, &mut context.registers);
    context.set_extended(extended);
    Ok(SignalSet(u64::from_le_bytes(mask)))
}
