//! The randomness the helper hands to the engine.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// A ChaCha20 CSPRNG seeded from the kernel's random source.
pub fn os_rng() -> Result<ChaCha20Rng, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)?;
    let rng = ChaCha20Rng::from_seed(seed);
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(rng)
}
