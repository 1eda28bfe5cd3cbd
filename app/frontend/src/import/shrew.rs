use super::{Draft, ImportError, Source};

pub(crate) fn parse(_src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    Ok(Vec::new())
}
