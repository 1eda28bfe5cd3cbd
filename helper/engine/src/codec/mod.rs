//! ISAKMP wire format (filled by the codec work).
