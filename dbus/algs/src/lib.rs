//! The IKE vocabulary both sides of Postern's contract speak, with no crypto in it:
//!
//! * [`algs`]: algorithm identifiers (IANA numbers, key lengths, names);
//! * [`proposal`]: strongSwan's proposal syntax (`aes256-sha256-modp2048`,
//!   `aes128gcm16`), parsed into [`algs`] values;
//! * [`xauth`]: the fields an XAuth round asks for and the answers to them.
//!
//! The profile parser (`postern-dbus`, used by the unprivileged front ends) and the
//! engine (`postern-engine`, in the helper) both depend on this crate, so the front ends
//! never compile the engine's RSA/ECDSA/big-number stack.
#![forbid(unsafe_code)]

pub mod algs;
pub mod proposal;
pub mod xauth;
