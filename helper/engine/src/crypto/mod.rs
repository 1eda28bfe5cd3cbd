//! IKE crypto suite (filled by the crypto work).
