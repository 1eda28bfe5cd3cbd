//! Bytes to text: UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1 (what the
//! Windows clients wrote in Western locales); CRLF and lone CR become LF.

/// Decodes a configuration file's bytes; never fails (Latin-1 maps every byte).
pub fn decode(bytes: &[u8]) -> String {
    let text = if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        String::from_utf8(rest.to_vec()).unwrap_or_else(|_| latin1(rest))
    } else if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        utf16(rest, u16::from_be_bytes)
    } else {
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => latin1(bytes),
        }
    };
    normalize(&text)
}

/// Line ends to LF, a leading BOM removed.
pub fn normalize(text: &str) -> String {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !t.contains('\r') {
        return t.to_string();
    }
    t.replace("\r\n", "\n").replace('\r', "\n")
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn utf16(bytes: &[u8], f: fn([u8; 2]) -> u16) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| f([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(decode(b"\xEF\xBB\xBFa=b\r\nc=d\r\n"), "a=b\nc=d\n");
        assert_eq!(
            decode(b"Description=Bureau \xE0 Lyon\r\n"),
            "Description=Bureau à Lyon\n"
        );
        assert_eq!(decode("Café\n".as_bytes()), "Café\n");
        assert_eq!(decode(b"\xFF\xFEa\x00=\x00b\x00\r\x00\n\x00"), "a=b\n");
        assert_eq!(decode(b"a\rb"), "a\nb");
    }
}
