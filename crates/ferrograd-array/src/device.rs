//! Where an array's elements live.

use std::fmt;

/// The device that holds an array's storage. Only the CPU exists today; the storage enum is
/// shaped so that a CUDA variant adds a case here and in `storage.rs` without touching callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Device {
    /// Host memory.
    #[default]
    Cpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
        }
    }
}
