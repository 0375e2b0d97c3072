//! How the run loop starts and ends fibers it cannot simply resume. These
//! are decisions of the fiber layer (`ruby_api/fiber/lifecycle.rs`), which
//! registers them once at init ([`install`]); the scheduler calls them
//! through this table, so that `core` does not depend on the layer above.

use std::sync::OnceLock;

use rb_sys::VALUE;

use crate::rt::Error;

/// The fiber layer's answers to the run loop.
pub struct Lifecycle {
    /// Before a runner resumes `fiber` with `value`, an exception (the run
    /// loop asks only then): a Polyphony fiber that never started and is
    /// stopped or raised into ends at once, without a stack. True if it was
    /// ended.
    pub end_unstarted: fn(fiber: VALUE, value: VALUE) -> Result<bool, Error>,
    /// True for a Polyphony fiber whose block has not started.
    pub is_unstarted: fn(fiber: VALUE) -> bool,
    /// Resuming `fiber` failed before its body ran (no stack could be
    /// made): a Polyphony fiber ends with `exc`. True if it was ended.
    pub fail_to_start: fn(fiber: VALUE, exc: VALUE) -> Result<bool, Error>,
}

static LIFECYCLE: OnceLock<Lifecycle> = OnceLock::new();

/// Fibers nobody registered rules for are plain fibers.
static PLAIN: Lifecycle = Lifecycle {
    end_unstarted: |_, _| Ok(false),
    is_unstarted: |_| false,
    fail_to_start: |_, _| Ok(false),
};

/// Registers the fiber layer's rules (once, at init; later calls are
/// ignored).
pub fn install(rules: Lifecycle) {
    let _ = LIFECYCLE.set(rules);
}

/// The registered rules.
#[inline]
pub(crate) fn rules() -> &'static Lifecycle {
    LIFECYCLE.get().unwrap_or(&PLAIN)
}
