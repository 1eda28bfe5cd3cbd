//! Codec tests: round trips, malformed input, and captures from strongSwan.

use super::*;

// ---------------------------------------------------------------------------
// Helpers

/// Parses a fixture: hex digits, whitespace ignored, `#` to end of line a comment.
fn fixture(text: &str) -> Vec<u8> {
    let hex: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(hex).expect("fixture is valid hex")
}

fn header(exchange: ExchangeType, flags: u8, message_id: u32) -> Header {
    Header {
        initiator_cookie: [1, 2, 3, 4, 5, 6, 7, 8],
        responder_cookie: [9, 10, 11, 12, 13, 14, 15, 16],
        next_payload: PayloadType::NONE,
        version: 0x10,
        exchange,
        flags,
        message_id,
        length: 0,
    }
}

fn id_fqdn(name: &str) -> IdPayload {
    IdPayload {
        id_type: IdType::FQDN,
        protocol: 17,
        port: 500,
        data: name.as_bytes().to_vec(),
    }
}

fn phase1_sa() -> SaPayload {
    SaPayload {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::ISAKMP,
            spi: vec![],
            transforms: vec![
                Transform {
                    number: 1,
                    id: 1, // KEY_IKE
                    attributes: vec![
                        Attribute::basic(attr::ENCRYPTION_ALGORITHM, 7),
                        Attribute::basic(attr::KEY_LENGTH, 256),
                        Attribute::basic(attr::HASH_ALGORITHM, 4),
                        Attribute::basic(attr::GROUP_DESCRIPTION, 14),
                        Attribute::basic(attr::AUTHENTICATION_METHOD, attr::XAUTH_INIT_PSK),
                        Attribute::basic(attr::LIFE_TYPE, attr::SECONDS),
                        Attribute::variable(attr::LIFE_DURATION, vec![0, 1, 0x51, 0x80]),
                    ],
                },
                Transform {
                    number: 2,
                    id: 1,
                    attributes: vec![
                        Attribute::basic(attr::ENCRYPTION_ALGORITHM, 5),
                        Attribute::basic(attr::HASH_ALGORITHM, 2),
                        Attribute::basic(attr::GROUP_DESCRIPTION, 2),
                        Attribute::basic(attr::AUTHENTICATION_METHOD, attr::PSK),
                    ],
                },
            ],
        }],
    }
}

fn phase2_sa() -> SaPayload {
    SaPayload {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![
            Proposal {
                number: 1,
                protocol: ProtocolId::ESP,
                spi: vec![0xc0, 0xff, 0xee, 0x01],
                transforms: vec![Transform {
                    number: 1,
                    id: 12, // ESP_AES
                    attributes: vec![
                        Attribute::basic(
                            ipsec_attr::ENCAPSULATION_MODE,
                            ipsec_attr::UDP_TUNNEL_RFC,
                        ),
                        Attribute::basic(ipsec_attr::SA_LIFE_TYPE, ipsec_attr::SECONDS),
                        Attribute::basic(ipsec_attr::SA_LIFE_DURATION, 3600),
                        Attribute::basic(ipsec_attr::AUTHENTICATION_ALGORITHM, 2),
                        Attribute::basic(ipsec_attr::KEY_LENGTH, 128),
                    ],
                }],
            },
            // A second proposal with an unknown protocol and no attributes.
            Proposal {
                number: 2,
                protocol: ProtocolId(77),
                spi: vec![1, 2],
                transforms: vec![Transform {
                    number: 1,
                    id: 3,
                    attributes: vec![],
                }],
            },
        ],
    }
}

/// One of every payload kind.
fn every_payload() -> Vec<Payload> {
    vec![
        Payload::Sa(phase1_sa()),
        Payload::Sa(phase2_sa()),
        Payload::Ke(vec![0xab; 128]),
        Payload::Id(id_fqdn("vpn.example.com")),
        Payload::Id(IdPayload {
            id_type: IdType::IPV4_ADDR_SUBNET,
            protocol: 0,
            port: 0,
            data: vec![10, 1, 0, 0, 255, 255, 0, 0],
        }),
        Payload::Cert(CertPayload {
            encoding: CertPayload::X509_SIG,
            data: vec![0x30, 0x82, 1, 2],
        }),
        Payload::CertReq(CertPayload {
            encoding: CERT_X509_SIG,
            data: vec![],
        }),
        Payload::Hash(vec![0x11; 20]),
        Payload::Sig(vec![0x22; 64]),
        Payload::Nonce(vec![0x33; 32]),
        Payload::Notify(NotifyPayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi: vec![7; 16],
            kind: NotifyType::R_U_THERE,
            data: 42u32.to_be_bytes().to_vec(),
        }),
        Payload::Notify(NotifyPayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ESP,
            spi: vec![],
            kind: NotifyType(40000), // unknown status type
            data: vec![],
        }),
        Payload::Delete(DeletePayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }),
        Payload::Delete(DeletePayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![vec![9; 16]],
        }),
        Payload::VendorId(
            b"\xaf\xca\xd7\x13\x68\xa1\xf1\xc9\x6b\x86\x96\xfc\x77\x57\x01\x00".to_vec(),
        ),
        Payload::NatD {
            draft: false,
            hash: vec![0x44; 20],
        },
        Payload::NatD {
            draft: true,
            hash: vec![0x45; 20],
        },
        Payload::NatOa {
            draft: false,
            id: IdPayload {
                id_type: IdType::IPV4_ADDR,
                protocol: 0,
                port: 0,
                data: vec![192, 168, 1, 2],
            },
        },
        Payload::NatOa {
            draft: true,
            id: IdPayload {
                id_type: IdType::IPV6_ADDR,
                protocol: 0,
                port: 0,
                data: vec![0xfe; 16],
            },
        },
        Payload::Attr(AttrPayload {
            cfg_type: cfg_attr::REPLY,
            identifier: 0x1234,
            attributes: vec![
                Attribute::variable(cfg_attr::INTERNAL_IP4_ADDRESS, vec![10, 0, 0, 7]),
                Attribute::variable(cfg_attr::INTERNAL_IP4_DNS, vec![10, 0, 0, 1]),
                Attribute::variable(cfg_attr::UNITY_BANNER, b"Welcome".to_vec()),
                Attribute::basic(cfg_attr::XAUTH_TYPE, cfg_attr::XAUTH_TYPE_GENERIC),
                Attribute::basic(cfg_attr::XAUTH_STATUS, cfg_attr::XAUTH_STATUS_OK),
                Attribute::variable(cfg_attr::XAUTH_USER_NAME, vec![]),
                Attribute::variable(0x7abc, vec![1, 2, 3]), // unknown, TLV
                Attribute::basic(0x7abd, 9),                // unknown, TV
            ],
        }),
        Payload::Fragment(FragmentPayload {
            id: 3,
            number: 1,
            last: false,
            data: vec![0x55; 100],
        }),
        Payload::Fragment(FragmentPayload {
            id: 3,
            number: 2,
            last: true,
            data: vec![],
        }),
        Payload::Unknown {
            kind: PayloadType(200),
            data: vec![1, 2, 3],
        },
        Payload::Unknown {
            kind: PayloadType(33),
            data: vec![],
        },
    ]
}

/// A generic payload header + body.
fn raw_payload(next: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![next, 0];
    v.extend_from_slice(&u16::try_from(body.len() + 4).unwrap().to_be_bytes());
    v.extend_from_slice(body);
    v
}

// ---------------------------------------------------------------------------
// Round trips

#[test]
fn every_payload_round_trips_alone() {
    for p in every_payload() {
        let mut bytes = Vec::new();
        p.encode_with_next(PayloadType::NONE, &mut bytes);
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            bytes.len()
        );
        assert_eq!(&bytes[4..], &p.encode_body()[..]);
        let decoded = decode_payloads(p.kind(), &bytes, false).unwrap();
        assert_eq!(
            decoded,
            vec![Decoded {
                payload: p.clone(),
                span: 0..bytes.len()
            }],
            "{p:?}"
        );
        assert_eq!(
            Payload::decode_body(p.kind(), &p.encode_body()),
            Ok(p.clone())
        );
    }
}

#[test]
fn payload_chain_round_trips_with_spans() {
    let payloads = every_payload();
    let (first, bytes) = encode_payloads(&payloads);
    assert_eq!(first, PayloadType::SA);
    let decoded = decode_payloads(first, &bytes, false).unwrap();
    assert_eq!(decoded.len(), payloads.len());
    let mut at = 0;
    for (d, p) in decoded.iter().zip(&payloads) {
        assert_eq!(&d.payload, p);
        assert_eq!(d.span.start, at);
        // The span covers the generic header and the body exactly.
        assert_eq!(&bytes[d.span.start + 4..d.span.end], &p.encode_body()[..]);
        at = d.span.end;
    }
    assert_eq!(at, bytes.len());
    // Re-encoding is byte-identical.
    let again: Vec<Payload> = decoded.into_iter().map(|d| d.payload).collect();
    assert_eq!(encode_payloads(&again), (first, bytes));
}

#[test]
fn empty_chain() {
    assert_eq!(encode_payloads(&[]), (PayloadType::NONE, vec![]));
    assert_eq!(decode_payloads(PayloadType::NONE, &[], false), Ok(vec![]));
    assert_eq!(
        decode_payloads(PayloadType::NONE, &[0], false),
        Err(DecodeError::TrailingBytes {
            what: "last payload",
            n: 1
        })
    );
    assert_eq!(decode_payloads(PayloadType::NONE, &[0], true), Ok(vec![]));
}

#[test]
fn padding_allowed_only_when_asked() {
    let (first, mut bytes) =
        encode_payloads(&[Payload::Hash(vec![1; 20]), Payload::Nonce(vec![2; 16])]);
    let n = bytes.len();
    bytes.extend_from_slice(&[0, 0, 0, 7]);
    let d = decode_payloads(first, &bytes, true).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].span.end, n);
    assert_eq!(
        decode_payloads(first, &bytes, false),
        Err(DecodeError::TrailingBytes {
            what: "last payload",
            n: 4
        })
    );
}

#[test]
fn whole_messages_round_trip() {
    let messages = vec![
        Message {
            header: header(ExchangeType::IDENTITY_PROTECTION, 0, 0),
            payloads: every_payload(),
        },
        Message {
            header: header(ExchangeType::INFORMATIONAL, 0, 0xdeadbeef),
            payloads: vec![],
        },
        Message {
            header: header(
                ExchangeType(99),
                Header::FLAG_COMMIT | Header::FLAG_AUTH_ONLY | 0x40,
                7,
            ),
            payloads: vec![Payload::Unknown {
                kind: PayloadType(255),
                data: vec![0; 9],
            }],
        },
    ];
    for m in messages {
        let bytes = m.encode();
        let d = Message::decode(&bytes).unwrap();
        assert_eq!(d.header.length as usize, bytes.len());
        assert_eq!(
            d.header.next_payload,
            m.payloads.first().map_or(PayloadType::NONE, Payload::kind)
        );
        assert_eq!(d.payloads, m.payloads);
        assert_eq!(d.encode(), bytes);
        let mut expected = m.header.clone();
        expected.next_payload = d.header.next_payload;
        expected.length = d.header.length;
        assert_eq!(d.header, expected);
    }
}

#[test]
fn header_round_trip_and_fields() {
    let mut h = header(ExchangeType::QUICK, Header::FLAG_ENCRYPTION, 0x01020304);
    h.next_payload = PayloadType::HASH;
    h.length = 28;
    let mut out = Vec::new();
    h.encode(&mut out);
    assert_eq!(out.len(), Header::LEN);
    assert_eq!(&out[16..], &[8, 0x10, 32, 1, 1, 2, 3, 4, 0, 0, 0, 28]);
    assert_eq!(Header::decode(&out), Ok(h.clone()));
    assert!(h.is_encrypted());
    // Header::decode accepts a buffer longer than `length` (e.g. a padded datagram).
    out.extend_from_slice(&[0; 8]);
    assert_eq!(Header::decode(&out), Ok(h));
    // Minor version is not checked, major is.
    out[17] = 0x11;
    assert!(Header::decode(&out).is_ok());
    out[17] = 0x20;
    assert_eq!(
        Header::decode(&out),
        Err(DecodeError::UnsupportedVersion(0x20))
    );
}

#[test]
fn newtypes_names_and_unknowns() {
    assert_eq!(NotifyType::NO_PROPOSAL_CHOSEN, NotifyType(14));
    assert_eq!(NotifyType(14).name(), Some("NO_PROPOSAL_CHOSEN"));
    assert_eq!(NotifyType(30).name(), Some("UNEQUAL_PAYLOAD_LENGTHS"));
    assert_eq!(NotifyType(31).name(), None);
    assert!(NotifyType::AUTHENTICATION_FAILED.is_error());
    assert!(NotifyType(8191).is_error());
    assert!(!NotifyType(8192).is_error());
    assert!(!NotifyType::INITIAL_CONTACT.is_error());
    assert!(!NotifyType::R_U_THERE_ACK.is_error());
    assert_eq!(NotifyType::R_U_THERE.0, 36136);
    assert_eq!(PayloadType::FRAGMENT.to_string(), "FRAGMENT");
    assert_eq!(PayloadType(99).to_string(), "PayloadType(99)");
    assert_eq!(ExchangeType::MAIN, ExchangeType(2));
    assert_eq!(ExchangeType::TRANSACTION.name(), Some("TRANSACTION"));
    assert_eq!(ProtocolId::ESP, ProtocolId(3));
    assert_eq!(IdType::KEY_ID, IdType(11));
    assert_eq!(u16::from(NotifyType::CONNECTED), 16384);
}

#[test]
fn attribute_forms_and_integers() {
    let tv = Attribute::basic(attr::LIFE_DURATION, 28800);
    let mut out = Vec::new();
    tv.encode(&mut out);
    assert_eq!(out, [0x80, 12, 0x70, 0x80]);
    assert_eq!(tv.as_u64(), Some(28800));

    let tlv = Attribute::variable(attr::LIFE_DURATION, vec![0, 0x01, 0x51, 0x80]);
    out.clear();
    tlv.encode(&mut out);
    assert_eq!(out, [0, 12, 0, 4, 0, 1, 0x51, 0x80]);
    assert_eq!(tlv.as_u64(), Some(86400));
    assert_eq!(Attribute::read(&mut Reader::new(&out)), Ok(tlv));

    assert_eq!(Attribute::variable(1, vec![]).as_u64(), None);
    assert_eq!(Attribute::variable(1, vec![1; 9]).as_u64(), None);
    assert_eq!(
        Attribute::variable(1, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 5]).as_u64(),
        Some(5)
    );
    assert_eq!(
        Attribute::variable(1, vec![0xff; 8]).as_u64(),
        Some(u64::MAX)
    );
    // The AF bit is never part of `kind`.
    assert_eq!(Attribute::basic(0x8001, 1).kind, 1);
}

#[test]
fn attribute_constants() {
    assert_eq!(attr::GROUP_ORDER, 16);
    assert_eq!(attr::auth_method::HYBRID_RESP_RSA, 64222);
    assert_eq!(ipsec_attr::encapsulation::UDP_TRANSPORT_DRAFT, 61444);
    assert_eq!(ipsec_attr::KEY_ROUNDS, 7);
    assert_eq!(cfg_attr::UNITY_DDNS_HOSTNAME, 28682);
    assert_eq!(cfg_attr::XAUTH_ANSWER, 16529);
    assert_eq!(cfg_attr::ACK, 4);
}

// ---------------------------------------------------------------------------
// Malformed input

#[test]
fn truncated_header() {
    let m = Message {
        header: header(ExchangeType::AGGRESSIVE, 0, 0),
        payloads: vec![],
    }
    .encode();
    for n in 0..Header::LEN {
        assert!(
            matches!(Header::decode(&m[..n]), Err(DecodeError::Truncated { need: _, have, .. }) if have <= n),
            "prefix {n}"
        );
        assert!(Message::decode(&m[..n]).is_err());
    }
}

#[test]
fn header_length_checks() {
    let mut m = Message {
        header: header(ExchangeType::AGGRESSIVE, 0, 0),
        payloads: vec![],
    }
    .encode();
    // length < 28
    m[27] = 27;
    assert_eq!(
        Header::decode(&m),
        Err(DecodeError::BadLength {
            what: "ISAKMP header",
            len: 27
        })
    );
    // length beyond the buffer
    m[27] = 29;
    assert_eq!(
        Header::decode(&m),
        Err(DecodeError::BadLength {
            what: "ISAKMP header",
            len: 29
        })
    );
    m[24] = 0xff;
    assert!(matches!(
        Header::decode(&m),
        Err(DecodeError::BadLength { .. })
    ));
}

#[test]
fn message_length_mismatch() {
    let mut m = Message {
        header: header(ExchangeType::INFORMATIONAL, 0, 1),
        payloads: vec![Payload::Hash(vec![1; 20])],
    }
    .encode();
    m.push(0);
    assert_eq!(
        Message::decode(&m),
        Err(DecodeError::BadLength {
            what: "ISAKMP message",
            len: m.len() - 1
        })
    );
    // Fix the header length: now the payload chain has a trailing byte.
    m[27] += 1;
    assert_eq!(
        Message::decode(&m),
        Err(DecodeError::TrailingBytes {
            what: "last payload",
            n: 1
        })
    );
}

#[test]
fn encrypted_message_rejected_as_plaintext() {
    let m = Message {
        header: header(
            ExchangeType::IDENTITY_PROTECTION,
            Header::FLAG_ENCRYPTION,
            0,
        ),
        payloads: vec![Payload::Hash(vec![1; 20])],
    }
    .encode();
    assert!(matches!(
        Message::decode(&m),
        Err(DecodeError::Invalid { .. })
    ));
    assert!(Header::decode(&m).is_ok());
}

#[test]
fn generic_length_below_four() {
    for len in 0u8..4 {
        let buf = [0, 0, 0, len, 0, 0, 0, 0];
        assert_eq!(
            decode_payloads(PayloadType::NONCE, &buf, true),
            Err(DecodeError::BadLength {
                what: "NONCE payload",
                len: usize::from(len)
            })
        );
    }
}

#[test]
fn generic_length_beyond_buffer() {
    let mut p = raw_payload(0, &[1, 2, 3, 4]);
    p[3] += 1;
    assert_eq!(
        decode_payloads(PayloadType::HASH, &p, true),
        Err(DecodeError::BadLength {
            what: "HASH payload",
            len: 9
        })
    );
    // A next payload announced but no bytes for it.
    let p = raw_payload(PayloadType::NONCE.0, &[1, 2, 3, 4]);
    assert!(matches!(
        decode_payloads(PayloadType::HASH, &p, true),
        Err(DecodeError::Truncated { .. })
    ));
    // A generic header cut short.
    assert!(matches!(
        decode_payloads(PayloadType::HASH, &[0, 0, 0], true),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn trailing_bytes_inside_payloads() {
    // A delete payload whose SPIs do not fill the body.
    let mut body = vec![0, 0, 0, 1, 3, 4, 0, 1];
    body.extend_from_slice(&[1, 2, 3, 4, 5]);
    assert!(matches!(
        decode_payloads(PayloadType::DELETE, &raw_payload(0, &body), false),
        Err(DecodeError::BadLength { .. })
    ));
    // An SA payload with bytes after the last proposal.
    let mut sa = Payload::Sa(phase2_sa()).encode_body();
    sa.push(0);
    assert!(matches!(
        Payload::decode_body(PayloadType::SA, &sa),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn nested_types_rejected_at_top_level() {
    for t in [PayloadType::PROPOSAL, PayloadType::TRANSFORM] {
        let p = raw_payload(0, &[1, 1, 0, 0]);
        assert!(matches!(
            decode_payloads(t, &p, false),
            Err(DecodeError::Invalid { .. })
        ));
        // Also as a later payload of the chain.
        let mut chain = raw_payload(t.0, &[9; 4]);
        chain.extend_from_slice(&p);
        assert!(matches!(
            decode_payloads(PayloadType::HASH, &chain, false),
            Err(DecodeError::Invalid { .. })
        ));
    }
}

#[test]
fn too_many_payloads() {
    let many = vec![Payload::VendorId(vec![1]); MAX_PAYLOADS + 1];
    let (first, bytes) = encode_payloads(&many);
    assert_eq!(
        decode_payloads(first, &bytes, false),
        Err(DecodeError::Invalid {
            what: "too many payloads"
        })
    );
    let (first, bytes) = encode_payloads(&many[1..]);
    assert_eq!(
        decode_payloads(first, &bytes, false).map(|v| v.len()),
        Ok(MAX_PAYLOADS)
    );
}

#[test]
fn transform_count_mismatch() {
    let sa = phase2_sa();
    let mut body = Payload::Sa(sa).encode_body();
    // doi(4) situation(4) proposal header(4) number protocol spi_size count
    assert_eq!(body[15], 1);
    body[15] = 2;
    assert_eq!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Invalid {
            what: "transform count"
        })
    );
    body[15] = 0;
    assert_eq!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Invalid {
            what: "transform count"
        })
    );
}

#[test]
fn bad_chain_types_inside_sa() {
    let mut body = Payload::Sa(phase1_sa()).encode_body();
    // The only proposal's next field says "more proposals" but there are none.
    body[8] = 2;
    assert!(matches!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Truncated { .. })
    ));
    // A proposal chain entry typed as something else.
    body[8] = 5;
    assert_eq!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Invalid {
            what: "payload type in proposal chain"
        })
    );
    // First transform's next field typed as something else.
    let mut body = Payload::Sa(phase1_sa()).encode_body();
    assert_eq!(body[16], 3);
    body[16] = 9;
    assert_eq!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Invalid {
            what: "payload type in transform chain"
        })
    );
    // Wrong situation.
    let mut body = Payload::Sa(phase1_sa()).encode_body();
    body[7] = 2;
    assert_eq!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Invalid {
            what: "SA situation"
        })
    );
    // No proposals at all.
    assert!(Payload::decode_body(PayloadType::SA, &body[..8]).is_err());
    // Proposal SPI size beyond the proposal.
    let mut body = Payload::Sa(phase2_sa()).encode_body();
    body[14] = 200;
    assert!(matches!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn tv_and_tlv_overrun() {
    // TLV whose length runs past the attribute payload.
    let body = [cfg_attr::REQUEST, 0, 0, 1, 0, 1, 0, 5, 1, 2, 3];
    assert!(matches!(
        Payload::decode_body(PayloadType::ATTRIBUTE, &body),
        Err(DecodeError::Truncated {
            need: 5,
            have: 3,
            ..
        })
    ));
    // TV attribute cut in the middle of its value.
    let body = [cfg_attr::REQUEST, 0, 0, 1, 0x80, 1, 0];
    assert!(matches!(
        Payload::decode_body(PayloadType::ATTRIBUTE, &body),
        Err(DecodeError::Truncated {
            need: 2,
            have: 1,
            ..
        })
    ));
    // Attribute type cut.
    let body = [cfg_attr::REQUEST, 0, 0, 1, 0x80];
    assert!(matches!(
        Payload::decode_body(PayloadType::ATTRIBUTE, &body),
        Err(DecodeError::Truncated { .. })
    ));
    // A TLV in a transform running past the transform into the next one.
    let mut body = Payload::Sa(phase1_sa()).encode_body();
    // First transform body starts at 8 + 8 (proposal) + 4 (transform header) = 20;
    // attributes start at 24. Turn the first TV into a TLV of length 0x0100.
    assert_eq!(body[24], 0x80);
    body[24] = 0;
    body[26] = 1;
    assert!(matches!(
        Payload::decode_body(PayloadType::SA, &body),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn too_many_attributes() {
    let attrs = vec![Attribute::basic(1, 1); MAX_ATTRIBUTES + 1];
    let p = Payload::Attr(AttrPayload {
        cfg_type: 1,
        identifier: 0,
        attributes: attrs,
    });
    assert_eq!(
        Payload::decode_body(PayloadType::ATTRIBUTE, &p.encode_body()),
        Err(DecodeError::Invalid {
            what: "too many attributes"
        })
    );
}

#[test]
fn delete_spi_count_mismatch() {
    let d = Payload::Delete(DeletePayload {
        doi: 1,
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
    });
    let mut body = d.encode_body();
    assert_eq!(
        Payload::decode_body(PayloadType::DELETE, &body),
        Ok(d.clone())
    );
    body[7] = 3; // claims three SPIs
    assert!(matches!(
        Payload::decode_body(PayloadType::DELETE, &body),
        Err(DecodeError::BadLength { .. })
    ));
    body[7] = 1; // claims one SPI
    assert!(matches!(
        Payload::decode_body(PayloadType::DELETE, &body),
        Err(DecodeError::BadLength { .. })
    ));
    body[7] = 2;
    body[5] = 3; // SPI size 3
    assert!(matches!(
        Payload::decode_body(PayloadType::DELETE, &body),
        Err(DecodeError::BadLength { .. })
    ));
    body[5] = 0; // SPI size 0 with SPIs announced
    assert!(matches!(
        Payload::decode_body(PayloadType::DELETE, &body),
        Err(DecodeError::Invalid { .. })
    ));
    // Count field itself cut.
    assert!(matches!(
        Payload::decode_body(PayloadType::DELETE, &body[..7]),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn short_fixed_parts() {
    // Fragment payload with less than its 4 fixed bytes.
    for n in 0..4 {
        assert!(
            matches!(
                Payload::decode_body(PayloadType::FRAGMENT, &[0, 1, 2][..n.min(3)]),
                Err(DecodeError::Truncated { .. })
            ),
            "fragment {n}"
        );
        let p = raw_payload(0, &[0, 1, 2][..n.min(3)]);
        assert!(matches!(
            decode_payloads(PayloadType::FRAGMENT, &p, false),
            Err(DecodeError::Truncated { .. })
        ));
    }
    for (t, need) in [
        (PayloadType::ID, 4),
        (PayloadType::NAT_OA, 4),
        (PayloadType::NAT_OA_DRAFT, 4),
        (PayloadType::CERT, 1),
        (PayloadType::CERTREQ, 1),
        (PayloadType::NOTIFY, 8),
        (PayloadType::DELETE, 8),
        (PayloadType::ATTRIBUTE, 4),
        (PayloadType::SA, 8),
    ] {
        let body = vec![0u8; need - 1];
        assert!(
            matches!(
                Payload::decode_body(t, &body),
                Err(DecodeError::Truncated { .. })
            ),
            "{t}"
        );
    }
    // Notify whose SPI size runs past the payload.
    let body = [0, 0, 0, 1, 1, 16, 0, 24, 1, 2, 3];
    assert!(matches!(
        Payload::decode_body(PayloadType::NOTIFY, &body),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn fragment_flags() {
    let p = Payload::decode_body(PayloadType::FRAGMENT, &[0, 7, 3, 0xff, 9]).unwrap();
    assert_eq!(
        p,
        Payload::Fragment(FragmentPayload {
            id: 7,
            number: 3,
            last: true,
            data: vec![9]
        })
    );
    let p = Payload::decode_body(PayloadType::FRAGMENT, &[0, 7, 3, 0xfe]).unwrap();
    assert_eq!(
        p,
        Payload::Fragment(FragmentPayload {
            id: 7,
            number: 3,
            last: false,
            data: vec![]
        })
    );
}

#[test]
fn random_prefixes_and_mutations_never_panic() {
    // A cheap deterministic stand-in for the fuzzer: every prefix and every
    // single-byte mutation of a rich message decodes or errors, never panics,
    // and whatever decodes re-encodes to something that decodes the same.
    let m = Message {
        header: header(ExchangeType::IDENTITY_PROTECTION, 0, 0),
        payloads: every_payload(),
    }
    .encode();
    let check = |buf: &[u8]| {
        if let Ok(d) = Message::decode(buf) {
            assert_eq!(Message::decode(&d.encode()).as_ref(), Ok(&d));
        }
        let chain = buf
            .get(Header::LEN..)
            .map(|rest| decode_payloads(PayloadType(buf[16]), rest, true));
        if let Some(Ok(d)) = chain {
            let payloads: Vec<Payload> = d.iter().map(|x| x.payload.clone()).collect();
            let (first, bytes) = encode_payloads(&payloads);
            assert_eq!(decode_payloads(first, &bytes, false), Ok(d));
        }
    };
    for n in 0..m.len() {
        check(&m[..n]);
    }
    let mut x: u32 = 0x1234_5678;
    for i in 0..m.len() {
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut b = m.clone();
            b[i] = (x & 0xff) as u8;
            check(&b);
        }
    }
}

// ---------------------------------------------------------------------------
// Captures from strongSwan (see the comments in each fixture)

const MM1: &str = include_str!("fixtures/mm1_sa.hex");
const MM2: &str = include_str!("fixtures/mm2_sa.hex");
const MM3: &str = include_str!("fixtures/mm3_ke.hex");
const MM4: &str = include_str!("fixtures/mm4_ke.hex");
const MM5: &str = include_str!("fixtures/mm5_encrypted.hex");
const AM1: &str = include_str!("fixtures/am1.hex");
const INFO: &str = include_str!("fixtures/info_auth_failed.hex");

/// Decodes a captured plaintext message and checks it re-encodes byte for byte.
fn capture(text: &str) -> (Vec<u8>, Message) {
    let bytes = fixture(text);
    let m = Message::decode(&bytes).expect("capture decodes");
    assert_eq!(m.encode(), bytes, "capture re-encodes identically");
    (bytes, m)
}

fn vendor_ids(m: &Message) -> Vec<&[u8]> {
    m.payloads
        .iter()
        .filter_map(|p| match p {
            Payload::VendorId(v) => Some(&v[..]),
            _ => None,
        })
        .collect()
}

/// RFC 3947 vendor ID: MD5("RFC 3947").
const VID_RFC3947: [u8; 16] = [
    0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f,
];
/// RFC 3706 DPD vendor ID.
const VID_DPD: [u8; 16] = [
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00,
];

#[test]
fn strongswan_main_mode_1() {
    let (bytes, m) = capture(MM1);
    assert_eq!(bytes.len(), 248);
    assert_eq!(m.header.exchange, ExchangeType::IDENTITY_PROTECTION);
    assert_eq!(m.header.version, 0x10);
    assert_eq!(m.header.responder_cookie, [0; 8]);
    assert_eq!(m.header.message_id, 0);
    let kinds: Vec<PayloadType> = m.payloads.iter().map(Payload::kind).collect();
    assert_eq!(
        kinds,
        [
            PayloadType::SA,
            PayloadType::VENDOR_ID,
            PayloadType::VENDOR_ID,
            PayloadType::VENDOR_ID,
            PayloadType::VENDOR_ID,
            PayloadType::VENDOR_ID
        ]
    );
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!("SA first")
    };
    assert_eq!((sa.doi, sa.situation), (DOI_IPSEC, SIT_IDENTITY_ONLY));
    assert_eq!(sa.proposals.len(), 1);
    let p = &sa.proposals[0];
    assert_eq!(p.protocol, ProtocolId::ISAKMP);
    assert!(p.spi.is_empty());
    // aes256-sha256-modp2048, aes128-sha1-modp1024, 3des-sha1-modp1024
    assert_eq!(p.transforms.len(), 3);
    let get = |t: &Transform, k: u16| {
        t.attributes
            .iter()
            .find(|a| a.kind == k)
            .and_then(Attribute::as_u64)
    };
    let t = &p.transforms[0];
    assert_eq!(t.id, 1); // KEY_IKE
    assert_eq!(get(t, attr::ENCRYPTION_ALGORITHM), Some(7));
    assert_eq!(get(t, attr::KEY_LENGTH), Some(256));
    assert_eq!(get(t, attr::HASH_ALGORITHM), Some(4));
    assert_eq!(get(t, attr::GROUP_DESCRIPTION), Some(14));
    assert_eq!(
        get(t, attr::AUTHENTICATION_METHOD),
        Some(u64::from(attr::PSK))
    );
    assert_eq!(get(t, attr::LIFE_TYPE), Some(u64::from(attr::SECONDS)));
    assert!(get(t, attr::LIFE_DURATION).is_some());
    assert_eq!(get(&p.transforms[1], attr::KEY_LENGTH), Some(128));
    assert_eq!(get(&p.transforms[1], attr::GROUP_DESCRIPTION), Some(2));
    assert_eq!(get(&p.transforms[2], attr::ENCRYPTION_ALGORITHM), Some(5));
    let vids = vendor_ids(&m);
    assert!(vids.contains(&&VID_RFC3947[..]));
    assert!(vids.contains(&&VID_DPD[..]));

    // The span of the SA payload is what RFC 2409 hashes as SAi_b (plus header).
    let d = decode_payloads(m.header.next_payload, &bytes[Header::LEN..], false).unwrap();
    assert_eq!(d[0].span.start, 0);
    assert_eq!(
        &bytes[Header::LEN + 4..Header::LEN + d[0].span.end],
        &m.payloads[0].encode_body()[..]
    );
}

#[test]
fn strongswan_main_mode_2() {
    let (_, m1) = capture(MM1);
    let (_, m) = capture(MM2);
    assert_eq!(m.header.initiator_cookie, m1.header.initiator_cookie);
    assert_ne!(m.header.responder_cookie, [0; 8]);
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!("SA first")
    };
    // The responder picks exactly one transform.
    assert_eq!(sa.proposals.len(), 1);
    assert_eq!(sa.proposals[0].transforms.len(), 1);
    assert_eq!(
        sa.proposals[0].transforms[0],
        match &m1.payloads[0] {
            Payload::Sa(s) => s.proposals[0].transforms[0].clone(),
            _ => unreachable!(),
        }
    );
    assert_eq!(vendor_ids(&m).len(), 4);
}

#[test]
fn strongswan_main_mode_3_and_4() {
    for text in [MM3, MM4] {
        let (_, m) = capture(text);
        let kinds: Vec<PayloadType> = m.payloads.iter().map(Payload::kind).collect();
        assert_eq!(
            kinds,
            [
                PayloadType::KE,
                PayloadType::NONCE,
                PayloadType::NAT_D,
                PayloadType::NAT_D
            ]
        );
        let Payload::Ke(ke) = &m.payloads[0] else {
            panic!()
        };
        assert_eq!(ke.len(), 256); // modp2048
        let Payload::NatD { draft, hash } = &m.payloads[2] else {
            panic!()
        };
        assert!(!draft);
        assert_eq!(hash.len(), 32); // SHA-256 negotiated
    }
}

#[test]
fn strongswan_main_mode_5_is_encrypted() {
    let bytes = fixture(MM5);
    let h = Header::decode(&bytes).unwrap();
    assert!(h.is_encrypted());
    assert_eq!(h.length as usize, bytes.len());
    assert_eq!(h.next_payload, PayloadType::ID);
    // AES: ciphertext is a whole number of blocks.
    assert_eq!((bytes.len() - Header::LEN) % 16, 0);
    assert!(matches!(
        Message::decode(&bytes),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn strongswan_aggressive_mode_1() {
    let (_, m) = capture(AM1);
    assert_eq!(m.header.exchange, ExchangeType::AGGRESSIVE);
    let kinds: Vec<PayloadType> = m.payloads.iter().take(4).map(Payload::kind).collect();
    assert_eq!(
        kinds,
        [
            PayloadType::SA,
            PayloadType::KE,
            PayloadType::NONCE,
            PayloadType::ID
        ]
    );
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!()
    };
    assert_eq!(ke.len(), 128); // modp1024
    let Payload::Id(id) = &m.payloads[3] else {
        panic!()
    };
    assert_eq!(id.id_type, IdType::USER_FQDN);
    assert_eq!(id.data, b"alice@example.com");
}

#[test]
fn strongswan_informational_notify() {
    let (_, m) = capture(INFO);
    assert_eq!(m.header.exchange, ExchangeType::INFORMATIONAL);
    assert_eq!(m.payloads.len(), 1);
    let Payload::Notify(n) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(n.kind, NotifyType::AUTHENTICATION_FAILED);
    assert!(n.kind.is_error());
    assert_eq!(n.protocol, ProtocolId::ISAKMP);
}

// ---------------------------------------------------------------------------
// libreswan 4.10 with its default ikepad=yes (captures in fixtures/libreswan_*)

const LIBRESWAN_AM2: &str = include_str!("fixtures/libreswan_am2_padded.hex");
const LIBRESWAN_MODECFG_REPLY: &str = include_str!("fixtures/libreswan_modecfg_reply_padded.hex");

#[test]
fn libreswan_padded_aggressive_reply() {
    let d = fixture(LIBRESWAN_AM2);
    assert_eq!(d.len(), 576);
    assert_eq!(&d[d.len() - 2..], &[0, 0]);
    // Strictly, the 2 bytes of padding belong to nothing.
    assert_eq!(
        Message::decode(&d),
        Err(DecodeError::TrailingBytes {
            what: "last payload",
            n: 2
        })
    );
    let m = Message::decode_received(&d).unwrap();
    let kinds: Vec<PayloadType> = m.payloads.iter().map(Payload::kind).collect();
    let vids = kinds
        .iter()
        .filter(|k| **k == PayloadType::VENDOR_ID)
        .count();
    assert_eq!(
        kinds[..5],
        [
            PayloadType::SA,
            PayloadType::KE,
            PayloadType::NONCE,
            PayloadType::ID,
            PayloadType::HASH
        ]
    );
    assert_eq!(vids, kinds.len() - 7, "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 2..], [PayloadType::NAT_D; 2]);
    let id = m.find(PayloadType::ID).unwrap();
    assert!(matches!(id, Payload::Id(i) if i.data == b"gw.lab"));
    // Re-encoded, the message is the same without its padding.
    let again = m.encode();
    assert_eq!(again.len(), 574);
    assert_eq!(&again[28..], &d[28..574]);
}

#[test]
fn libreswan_padded_mode_config_reply() {
    let body = fixture(LIBRESWAN_MODECFG_REPLY);
    // The strict codec reads the 2 zero bytes as the start of another attribute.
    assert!(matches!(
        decode_payloads(PayloadType::HASH, &body, true),
        Err(DecodeError::Truncated { .. })
    ));
    let d = decode_received_payloads(PayloadType::HASH, &body, Trailing::Any).unwrap();
    assert_eq!(d.len(), 2);
    // The spans are the payloads as their lengths say: the ATTRIBUTE payload's
    // includes its padding, as libreswan's HASH does.
    assert_eq!(d[0].span, 0..36);
    assert_eq!(d[1].span, 36..88);
    let Payload::Attr(a) = &d[1].payload else {
        panic!("not an ATTRIBUTE payload: {:?}", d[1].payload);
    };
    assert_eq!(a.cfg_type, cfg_attr::REPLY);
    assert_eq!(a.identifier, 0xfb1c);
    assert_eq!(
        a.attributes,
        vec![
            Attribute::variable(cfg_attr::INTERNAL_IP4_ADDRESS, vec![10, 200, 0, 1]),
            Attribute::variable(cfg_attr::INTERNAL_IP4_NETMASK, vec![255, 255, 255, 0]),
            Attribute::variable(cfg_attr::INTERNAL_IP4_DNS, vec![10, 77, 0, 53]),
            Attribute::variable(
                0x7004,
                vec![10, 77, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0]
            ),
        ]
    );
}

#[test]
fn alignment_padding_is_only_up_to_three_zero_bytes() {
    let attr = |pad: &[u8]| {
        let mut body = Payload::Attr(AttrPayload {
            cfg_type: cfg_attr::REPLY,
            identifier: 1,
            attributes: vec![Attribute::variable(0x7002, b"abc".to_vec())],
        })
        .encode_body();
        body.extend_from_slice(pad);
        Payload::decode_received_body(PayloadType::ATTRIBUTE, &body)
    };
    for pad in [&[][..], &[0], &[0, 0], &[0, 0, 0]] {
        let p = attr(pad).unwrap();
        assert!(
            matches!(&p, Payload::Attr(a) if a.attributes.len() == 1),
            "{pad:?}: {p:?}"
        );
    }
    assert_eq!(
        attr(&[0, 1]),
        Err(DecodeError::TrailingBytes {
            what: "last attribute",
            n: 2
        })
    );
    // Four zero bytes are an attribute (type 0, empty), not padding.
    assert!(matches!(attr(&[0; 4]), Ok(Payload::Attr(a)) if a.attributes.len() == 2));
    // After the last payload of a plaintext chain.
    let (first, bytes) = encode_payloads(&[Payload::Nonce(vec![7; 13])]);
    for (pad, ok) in [
        (&[0u8, 0, 0][..], true),
        (&[0, 0, 0, 0], false),
        (&[1], false),
    ] {
        let mut b = bytes.clone();
        b.extend_from_slice(pad);
        assert_eq!(
            decode_received_payloads(first, &b, Trailing::Alignment).is_ok(),
            ok,
            "{pad:?}"
        );
        assert!(decode_payloads(first, &b, false).is_err());
    }
}
