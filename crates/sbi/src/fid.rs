//! SBI function IDs (`a6`) of the implemented extensions, per each
//! extension's "Function Listing" table.

/// Base extension functions (ext-base.adoc, table_base_function_list).
pub mod base {
    /// `sbi_get_spec_version`.
    pub const GET_SPEC_VERSION: u64 = 0;
    /// `sbi_get_impl_id`.
    pub const GET_IMPL_ID: u64 = 1;
    /// `sbi_get_impl_version`.
    pub const GET_IMPL_VERSION: u64 = 2;
    /// `sbi_probe_extension`.
    pub const PROBE_EXTENSION: u64 = 3;
    /// `sbi_get_mvendorid`.
    pub const GET_MVENDORID: u64 = 4;
    /// `sbi_get_marchid`.
    pub const GET_MARCHID: u64 = 5;
    /// `sbi_get_mimpid`.
    pub const GET_MIMPID: u64 = 6;
}

/// TIME extension functions (ext-time.adoc, table_time_function_list).
pub mod time {
    /// `sbi_set_timer`.
    pub const SET_TIMER: u64 = 0;
}

/// IPI extension functions (ext-ipi.adoc, table_ipi_function_list).
pub mod ipi {
    /// `sbi_send_ipi`.
    pub const SEND_IPI: u64 = 0;
}

/// RFENCE extension functions (ext-rfence.adoc, table_rfence_function_list).
pub mod rfence {
    /// `sbi_remote_fence_i`.
    pub const REMOTE_FENCE_I: u64 = 0;
    /// `sbi_remote_sfence_vma`.
    pub const REMOTE_SFENCE_VMA: u64 = 1;
    /// `sbi_remote_sfence_vma_asid`.
    pub const REMOTE_SFENCE_VMA_ASID: u64 = 2;
    /// `sbi_remote_hfence_gvma_vmid` (not supported: guests have no H).
    pub const REMOTE_HFENCE_GVMA_VMID: u64 = 3;
    /// `sbi_remote_hfence_gvma` (not supported).
    pub const REMOTE_HFENCE_GVMA: u64 = 4;
    /// `sbi_remote_hfence_vvma_asid` (not supported).
    pub const REMOTE_HFENCE_VVMA_ASID: u64 = 5;
    /// `sbi_remote_hfence_vvma` (not supported).
    pub const REMOTE_HFENCE_VVMA: u64 = 6;
}

/// HSM extension functions (ext-hsm.adoc, table_hsm_function_list).
pub mod hsm {
    /// `sbi_hart_start`.
    pub const HART_START: u64 = 0;
    /// `sbi_hart_stop`.
    pub const HART_STOP: u64 = 1;
    /// `sbi_hart_get_status`.
    pub const HART_GET_STATUS: u64 = 2;
    /// `sbi_hart_suspend`.
    pub const HART_SUSPEND: u64 = 3;
}

/// SRST extension functions (ext-sys-reset.adoc, table_srst_function_list).
pub mod srst {
    /// `sbi_system_reset`.
    pub const SYSTEM_RESET: u64 = 0;
}

/// DBCN extension functions (ext-debug-console.adoc, table_dbcn_function_list).
pub mod dbcn {
    /// `sbi_debug_console_write`.
    pub const CONSOLE_WRITE: u64 = 0;
    /// `sbi_debug_console_read`.
    pub const CONSOLE_READ: u64 = 1;
    /// `sbi_debug_console_write_byte`.
    pub const CONSOLE_WRITE_BYTE: u64 = 2;
}
