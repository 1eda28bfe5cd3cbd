//! XAuth (draft-beaulieu-ike-xauth): what a gateway's round asks for, and the answers.

use std::fmt;

use zeroize::Zeroizing;

/// One thing the gateway asks for in an XAuth round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAuthField {
    UserName,
    Password,
    Passcode,
    NextPin,
    Answer,
}

/// Answers to a round, one per field asked.
#[derive(Clone, Default)]
pub struct Credentials {
    pub values: Vec<(XAuthField, Zeroizing<String>)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<_> = self.values.iter().map(|(k, _)| k).collect();
        f.debug_struct("Credentials")
            .field("fields", &fields)
            .finish_non_exhaustive()
    }
}
