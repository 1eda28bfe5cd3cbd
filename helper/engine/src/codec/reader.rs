//! A bounded, checked byte reader.
//!
//! Every read is checked against what is left; nothing here can index out of
//! bounds or panic. A reader carries a short name (`what`) of the structure it
//! reads, which ends up in the [`DecodeError`] it returns.

use super::DecodeError;

/// A cursor over a byte slice that never reads past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, named `"input"` in errors.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader::named(buf, "input")
    }

    /// A reader over `buf` whose errors name `what`.
    pub fn named(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// The same reader, with errors naming `what` from now on.
    pub fn with_what(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    /// The name used in errors.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// The next `n` bytes, or `Truncated`.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let have = self.left();
        let end = self.pos.checked_add(n).filter(|_| n <= have);
        match end.and_then(|end| self.buf.get(self.pos..end).map(|s| (s, end))) {
            Some((s, end)) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                what: self.what,
                need: n,
                have,
            }),
        }
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A reader over the next `n` bytes (consumed from this one), with the same name.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        let what = self.what;
        Ok(Reader::named(self.take(n)?, what))
    }

    /// Everything left (possibly empty); the reader is then empty.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }

    /// Peeks at what is left without consuming it.
    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// `TrailingBytes` unless everything was consumed.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes { what, n }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let data = [1u8, 2, 3, 4, 5, 6, 7];
        let mut r = Reader::named(&data, "thing");
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.position(), 3);
        let mut s = r.sub(2).unwrap();
        assert_eq!(s.u16(), Ok(0x0405));
        assert!(s.is_empty());
        assert_eq!(
            s.u8(),
            Err(DecodeError::Truncated {
                what: "thing",
                need: 1,
                have: 0
            })
        );
        assert_eq!(
            r.u32(),
            Err(DecodeError::Truncated {
                what: "thing",
                need: 4,
                have: 2
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.left(), 2);
        assert_eq!(
            r.expect_empty("x"),
            Err(DecodeError::TrailingBytes { what: "x", n: 2 })
        );
        assert!(r.take(usize::MAX).is_err());
        assert_eq!(r.rest(), &[6, 7]);
        assert_eq!(r.rest(), &[] as &[u8]);
        assert_eq!(r.expect_empty("x"), Ok(()));
    }
}
