//! The contract between front ends and helper.
//!
//! * [`profile`]: Contract 1, the profile file (TOML), parsed and validated.
#![forbid(unsafe_code)]

pub mod profile;
