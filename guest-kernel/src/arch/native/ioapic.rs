//! The I/O APIC: routes the console's ISA interrupt (COM1, IRQ 4) to a local-APIC vector.
//! No ACPI tables are read: QEMU's microvm and q35 both put their first I/O APIC at
//! 0xfec00000 with each ISA IRQ other than the PIT's on the pin of its number,
//! edge-triggered, active high. Every other pin stays masked.

use super::paging;

/// Where QEMU puts the I/O APIC.
const BASE: u64 = 0xfec0_0000;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u32 = 4;

const SELECT: u64 = 0x00;
const WINDOW: u64 = 0x10;
const VERSION: u32 = 0x01;
const REDIRECTION: u32 = 0x10;
const MASKED: u32 = 1 << 16;

struct IoApic {
    /// The direct-map address of the (uncached) register page.
    base: u64,
}

impl IoApic {
    fn read(&self, index: u32) -> u32 {
        // SAFETY: the I/O APIC's index and data registers in its uncached page (mapped by
        // `route`); selecting a register and reading it has no other effect.
        unsafe {
            ((self.base + SELECT) as *mut u32).write_volatile(index);
            ((self.base + WINDOW) as *const u32).read_volatile()
        }
    }

    fn write(&self, index: u32, value: u32) {
        // SAFETY: as in `read`; the values written are redirection entries built below.
        unsafe {
            ((self.base + SELECT) as *mut u32).write_volatile(index);
            ((self.base + WINDOW) as *mut u32).write_volatile(value);
        }
    }
}

/// Masks every pin, then routes ISA `irq` to `vector` on the local APIC `apic_id` (fixed
/// delivery, physical destination, edge, active high) and unmasks it. Returns the pin
/// count.
pub fn route(irq: u32, vector: u8, apic_id: u32) -> Result<u32, &'static str> {
    let ioapic = IoApic { base: paging::map_device(BASE)? };
    let version = ioapic.read(VERSION);
    if version == 0 || version == u32::MAX {
        return Err("no I/O APIC at 0xfec00000");
    }
    let pins = ((version >> 16) & 0xff) + 1;
    if irq >= pins || irq == 0 {
        return Err("the I/O APIC has no pin for the console's IRQ");
    }
    if apic_id > 0xff {
        return Err("the local APIC id does not fit an I/O APIC destination");
    }
    for pin in 0..pins {
        ioapic.write(REDIRECTION + 2 * pin, MASKED);
        ioapic.write(REDIRECTION + 2 * pin + 1, 0);
    }
    ioapic.write(REDIRECTION + 2 * irq + 1, apic_id << 24);
    ioapic.write(REDIRECTION + 2 * irq, u32::from(vector));
    Ok(pins)
}
