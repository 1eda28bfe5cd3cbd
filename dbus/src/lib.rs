//! The contract between front ends and helper.
//!
//! * [`profile`]: Contract 1, the profile file (TOML), parsed and validated.
//! * [`interface`]: Contract 3, the versioned D-Bus interface (`org.postern.Helper1`):
//!   names, proxies, the types that cross the bus, error names, polkit actions.
//! * [`failure`]: why a tunnel failed ([`failure::FailureKind`]), the one source of
//!   front ends' explanations and exit codes.
//! * [`request`]: validation of what callers send (profile text, secrets, answers).
//!
//! The bus policy and polkit actions files are in `packaging/`.
#![forbid(unsafe_code)]

pub mod failure;
pub mod interface;
pub mod profile;
pub mod request;
