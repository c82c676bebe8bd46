//! SBI extension IDs (`a7`), as listed in each extension's chapter heading.

/// Legacy `sbi_set_timer` (ext-legacy.adoc).
pub const LEGACY_SET_TIMER: u64 = 0x00;
/// Legacy `sbi_console_putchar`.
pub const LEGACY_CONSOLE_PUTCHAR: u64 = 0x01;
/// Legacy `sbi_console_getchar`.
pub const LEGACY_CONSOLE_GETCHAR: u64 = 0x02;
/// Legacy `sbi_clear_ipi`.
pub const LEGACY_CLEAR_IPI: u64 = 0x03;
/// Legacy `sbi_send_ipi`.
pub const LEGACY_SEND_IPI: u64 = 0x04;
/// Legacy `sbi_remote_fence_i`.
pub const LEGACY_REMOTE_FENCE_I: u64 = 0x05;
/// Legacy `sbi_remote_sfence_vma`.
pub const LEGACY_REMOTE_SFENCE_VMA: u64 = 0x06;
/// Legacy `sbi_remote_sfence_vma_asid`.
pub const LEGACY_REMOTE_SFENCE_VMA_ASID: u64 = 0x07;
/// Legacy `sbi_shutdown`.
pub const LEGACY_SHUTDOWN: u64 = 0x08;

/// Base extension (ext-base.adoc).
pub const BASE: u64 = 0x10;
/// Timer extension, "TIME" (ext-time.adoc).
pub const TIME: u64 = 0x5449_4D45;
/// IPI extension, "sPI" (ext-ipi.adoc).
pub const IPI: u64 = 0x73_5049;
/// RFENCE extension, "RFNC" (ext-rfence.adoc).
pub const RFENCE: u64 = 0x5246_4E43;
/// Hart State Management extension, "HSM" (ext-hsm.adoc).
pub const HSM: u64 = 0x48_534D;
/// System Reset extension, "SRST" (ext-sys-reset.adoc).
pub const SRST: u64 = 0x5352_5354;
/// Performance Monitoring Unit extension, "PMU" (not implemented).
pub const PMU: u64 = 0x50_4D55;
/// Debug Console extension, "DBCN" (ext-debug-console.adoc).
pub const DBCN: u64 = 0x4442_434E;
/// System Suspend extension, "SUSP" (not implemented).
pub const SUSP: u64 = 0x5355_5350;
/// CPPC extension (not implemented).
pub const CPPC: u64 = 0x4350_5043;
/// Nested acceleration extension, "NACL" (not implemented).
pub const NACL: u64 = 0x4E41_434C;
/// Steal-time accounting extension, "STA" (not implemented).
pub const STA: u64 = 0x53_5441;
/// Supervisor software events extension, "SSE" (not implemented).
pub const SSE: u64 = 0x53_5345;
/// Firmware features extension, "FWFT" (not implemented).
pub const FWFT: u64 = 0x4657_4654;
/// Debug triggers extension, "DBTR" (not implemented).
pub const DBTR: u64 = 0x4442_5452;
/// Message proxy extension, "MPXY" (not implemented).
pub const MPXY: u64 = 0x4D50_5859;
