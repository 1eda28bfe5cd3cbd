//! # postern-engine: the sans-IO IKEv1 engine
//!
//! This crate does no I/O: no sockets, no clock, no randomness of its own.
//! Time is passed in as [`std::time::Instant`] values and randomness through
//! an injected RNG, so two engines and a simulated clock can run a whole
//! negotiation inside one test.
//!
//! * [`codec`]: the ISAKMP wire format (RFC 2408/2409 and extensions).
//! * [`crypto`]: PRFs, ciphers, Diffie-Hellman groups and the IKEv1 key schedule.
//! * [`ike`]: the IKEv1 state machines (main, aggressive, quick mode; both roles).
//! * [`eap`]: the peer side of EAP (Identity, MS-CHAPv2, GTC) for IKEv2's IKE_AUTH.
//! * [`ike2`]: the IKEv2 state machines (RFC 7296; both roles), same driving
//!   interface and events as [`ike`].
//! * [`esp`]: ESP (RFC 4303) encapsulation and decapsulation for the userspace
//!   datapath (pure functions on buffers; the helper owns the sockets and TUN).
//! * [`proposal`]: strongSwan-style proposal strings.
//! * [`algs`]: algorithm identifiers shared by everything.
#![forbid(unsafe_code)]

// The vocabulary shared with the contract (no crypto): `crate::algs::...` and
// `crate::proposal::...` paths keep working inside the engine.
pub use postern_algs::{algs, proposal};

pub mod cert;
pub mod codec;
pub mod crypto;
pub mod eap;
pub mod esp;
pub mod ike;
pub mod ike2;
