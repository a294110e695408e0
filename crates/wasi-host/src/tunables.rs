//! [`LimitingTunables`]: wasmer's base tunables with every linear memory's maximum clamped.

use std::ptr::NonNull;

use wasmer::sys::BaseTunables;
use wasmer::sys::Tunables;
use wasmer::sys::vm::{VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::{MemoryError, MemoryStyle, MemoryType, Pages, TableStyle, TableType};

/// Clamps the maximum of every memory to `limit` pages, so `memory.grow` past it returns -1,
/// and refuses a memory whose minimum is already above it.
///
/// Tunables live on an [`wasmer::Engine`] handle; clones of one engine share compiled code
/// but each carries its own tunables, so every module gets an engine clone with its own
/// limit.
pub(crate) struct LimitingTunables {
    base: BaseTunables,
    limit: Pages,
}

impl LimitingTunables {
    pub(crate) fn new(base: BaseTunables, limit: Pages) -> LimitingTunables {
        LimitingTunables { base, limit }
    }

    /// The memory type with its maximum clamped to the limit.
    fn adjust(&self, requested: &MemoryType) -> MemoryType {
        let mut adjusted = *requested;
        adjusted.maximum = Some(match requested.maximum {
            Some(maximum) if maximum < self.limit => maximum,
            _ => self.limit,
        });
        adjusted
    }

    fn check(&self, ty: &MemoryType) -> Result<(), MemoryError> {
        if ty.minimum > self.limit {
            return Err(MemoryError::Generic(format!(
                "declared minimum of {} pages ({} bytes) exceeds the limit of {} pages ({} bytes)",
                ty.minimum.0,
                u64::from(ty.minimum.0) * 65536,
                self.limit.0,
                u64::from(self.limit.0) * 65536,
            )));
        }
        Ok(())
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        // The style must match what the module was compiled with (base tunables, unclamped
        // type): both give the static 4 GiB reservation for any 32-bit memory.
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.check(ty)?;
        self.base.create_host_memory(&self.adjust(ty), style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        self.check(ty)?;
        // SAFETY: forwarded unchanged from wasmer, which guarantees the location is valid;
        // only the memory type's maximum differs, which the base tunables handle.
        unsafe {
            self.base
                .create_vm_memory(&self.adjust(ty), style, vm_definition_location)
        }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from wasmer, which guarantees the location is valid.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }
}
