//! The I/O APIC: routes ISA interrupts (COM1's IRQ 4) to a local-APIC vector.
//!
//! No MADT is read: microvm and q35 both put their (first) I/O APIC at 0xfec00000 with
//! the ISA IRQs on pins of the same number, except IRQ 0 (the PIT), which both route to
//! pin 2 (the PC convention a MADT interrupt-source override would state). ISA IRQs are
//! edge-triggered, active high. Every pin starts masked here.

use super::mmio::{self, DevicePage};
use hypervisor::mm::frames::{Frame, FrameAllocator};
use spin::Once;

/// Where microvm and q35 place the I/O APIC.
pub const DEFAULT_BASE: u64 = 0xfec0_0000;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u8 = 4;

const SELECT: u64 = 0x00;
const WINDOW: u64 = 0x10;
const VERSION: u32 = 0x01;
const REDIRECTION: u32 = 0x10;
const MASKED: u32 = 1 << 16;

struct IoApic {
    page: DevicePage,
    pins: u32,
}

static IOAPIC: Once<IoApic> = Once::new();

impl IoApic {
    fn read(&self, index: u32) -> u32 {
        self.page.register(SELECT).write(index);
        self.page.register(WINDOW).read()
    }

    fn write(&self, index: u32, value: u32) {
        self.page.register(SELECT).write(index);
        self.page.register(WINDOW).write(value);
    }
}

/// Maps the I/O APIC at [`DEFAULT_BASE`] and masks every pin. Returns the pin count.
pub fn init(frames: &mut FrameAllocator, root: Frame) -> Result<u32, &'static str> {
    let page = mmio::map_device_page(frames, root, DEFAULT_BASE).ok_or("no frame for the I/O APIC page tables")?;
    let probe = IoApic { page, pins: 0 };
    let version = probe.read(VERSION);
    if version == u32::MAX || version == 0 {
        return Err("no I/O APIC at 0xfec00000");
    }
    let pins = ((version >> 16) & 0xff) + 1;
    let ioapic = IoApic { page, pins };
    for pin in 0..pins {
        ioapic.write(REDIRECTION + 2 * pin, MASKED);
        ioapic.write(REDIRECTION + 2 * pin + 1, 0);
    }
    IOAPIC.call_once(|| ioapic);
    Ok(pins)
}

fn ioapic() -> &'static IoApic {
    IOAPIC.get().expect("ioapic::init ran at boot")
}

/// The pin an ISA IRQ arrives on (no MADT: the PC defaults).
fn pin(irq: u8) -> u32 {
    if irq == 0 {
        2
    } else {
        u32::from(irq)
    }
}

/// Routes ISA `irq` to `vector` on the local APIC `apic_id` (physical destination,
/// fixed delivery, edge, active high), left masked. `Err` if the pin does not exist or
/// the vector is one of the CPU's exception vectors.
pub fn route_isa_irq(irq: u8, vector: u8, apic_id: u32) -> Result<(), &'static str> {
    let ioapic = ioapic();
    let pin = pin(irq);
    if pin >= ioapic.pins {
        return Err("no such I/O APIC pin");
    }
    if vector < 32 {
        return Err("vectors below 32 are CPU exceptions");
    }
    if apic_id > 0xff {
        return Err("an I/O APIC physical destination is 8 bits");
    }
    ioapic.write(REDIRECTION + 2 * pin, MASKED);
    ioapic.write(REDIRECTION + 2 * pin + 1, apic_id << 24);
    ioapic.write(REDIRECTION + 2 * pin, MASKED | u32::from(vector));
    Ok(())
}

/// Lets ISA `irq` through.
pub fn unmask(irq: u8) {
    let ioapic = ioapic();
    let index = REDIRECTION + 2 * pin(irq);
    let entry = ioapic.read(index);
    ioapic.write(index, entry & !MASKED);
}
