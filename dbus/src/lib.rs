//! The contract between front ends and helper.
