//! Decode → encode → decode must be stable for anything the codec accepts,
//! and nothing may panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_engine::codec::{Header, Message, Payload, PayloadType, decode_payloads, encode_payloads};

fuzz_target!(|data: &[u8]| {
    // A whole plaintext message.
    if let Ok(first) = Message::decode(data) {
        let bytes = first.encode();
        let second = Message::decode(&bytes).expect("re-encoded message decodes");
        assert_eq!(first, second);
        // Strict decoding accounts for every byte; only reserved fields (read
        // and ignored, written as 0) may differ, so the length is the same.
        assert_eq!(bytes.len(), data.len());
    }

    // The payload chain after a header, as for a decrypted body with padding.
    if let (Some(&next), Some(body)) = (data.get(16), data.get(Header::LEN..)) {
        if let Ok(first) = decode_payloads(PayloadType(next), body, true) {
            let payloads: Vec<Payload> = first.iter().map(|d| d.payload.clone()).collect();
            let (kind, bytes) = encode_payloads(&payloads);
            let second = decode_payloads(kind, &bytes, false).expect("re-encoded chain decodes");
            assert_eq!(first, second);
            for d in &first {
                let body = d.payload.encode_body();
                assert_eq!(Payload::decode_body(d.payload.kind(), &body).as_ref(), Ok(&d.payload));
            }
        }
    }
});
