//! Shared limits: numbers that `config` validates settings against and the
//! parts that enforce them use too. A leaf: it imports nothing from the crate,
//! so `config` depends on no module above it.

/// Longest token (`auth.*` config refuses longer ones): comparisons run over
/// this many bytes whatever the lengths, so timing reveals no length either.
pub const MAX_TOKEN_BYTES: usize = 256;

/// Default global body budget (`limits.body_budget_bytes`): 64 MiB.
pub const DEFAULT_BUDGET_BYTES: u64 = 64 * 1024 * 1024;

/// Default share of one client (`limits.body_budget_per_client_bytes`): 4 MiB.
pub const DEFAULT_PER_CLIENT_BYTES: u64 = 4 * 1024 * 1024;
