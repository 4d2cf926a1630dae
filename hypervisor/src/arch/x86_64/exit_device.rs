//! QEMU's `isa-debug-exit` device: the only way the hypervisor ends a run.

use hypercall_abi::exit::ExitStatus;
use x86_64::instructions::port::Port;

/// Ends the QEMU process with `status` (QEMU exits with `2 * (status + 16) + 1`, SPEC.md §10). Without the
/// device (real hardware, another VMM) the write is ignored and the CPU halts forever
/// with interrupts off, which is the honest thing left to do.
pub fn exit(status: ExitStatus) -> ! {
    let mut port: Port<u32> = Port::new(ExitStatus::DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the debug-exit device on the machines xtask configures; on a
    // machine without it an unclaimed port write has no effect.
    unsafe { port.write(status.device_value()) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
