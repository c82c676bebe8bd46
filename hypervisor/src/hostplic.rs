//! Driver for the machine's PLIC: routes the physical UART's interrupt to
//! the boot hart's S-mode context so console input wakes the hypervisor.

pub struct HostPlic {
    base: u64,
    context: u64,
    pub uart_irq: Option<u32>,
}

impl HostPlic {
    fn reg(&self, off: u64) -> *mut u32 {
        (self.base + off) as *mut u32
    }

    fn write(&self, off: u64, v: u32) {
        // SAFETY: base is the PLIC MMIO block from the host device tree and
        // off stays inside its register map.
        unsafe { self.reg(off).write_volatile(v) }
    }

    fn read(&self, off: u64) -> u32 {
        // SAFETY: as in write().
        unsafe { self.reg(off).read_volatile() }
    }

    /// Enables `uart_irq` (priority 1, threshold 0) for `context`.
    pub fn new(base: u64, context: u64, uart_irq: Option<u32>) -> Self {
        let p = Self {
            base,
            context,
            uart_irq,
        };
        p.write(0x20_0000 + context * 0x1000, 0);
        if let Some(irq) = uart_irq {
            p.enable(irq);
        }
        p
    }

    /// Routes `irq` to this context too (priority 1).
    pub fn enable(&self, irq: u32) {
        p_write_enable(self, irq);
    }

    pub fn claim(&self) -> Option<u32> {
        match self.read(0x20_0004 + self.context * 0x1000) {
            0 => None,
            irq => Some(irq),
        }
    }

    pub fn complete(&self, irq: u32) {
        self.write(0x20_0004 + self.context * 0x1000, irq);
    }
}

fn p_write_enable(p: &HostPlic, irq: u32) {
    p.write(4 * irq as u64, 1);
    let word = 0x2000 + p.context * 0x80 + 4 * (irq as u64 / 32);
    p.write(word, p.read(word) | 1 << (irq % 32));
}
