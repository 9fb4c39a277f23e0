//! The CPU op vector, in user space.

/// Called once at the end of the library's initialisation.
pub(crate) fn on_init() {}
