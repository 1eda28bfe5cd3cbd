//! The userspace ESP datapath: ESP over UDP 4500 (RFC 3948) between a TUN device and
//! the gateway, for kernels without ESP.

pub mod esp;
