use super::*;
use crate::crypto::test_rng;

fn creds(password: &str) -> Credentials {
    Credentials {
        identity: b"alice@example.org".to_vec(),
        user: b"alice".to_vec(),
        password: Zeroizing::new(password.to_string()),
    }
}

fn request(id: u8, ty: u8, data: &[u8]) -> Vec<u8> {
    let mut v = response(id, ty, data);
    v[0] = REQUEST;
    v
}

fn challenge(id: u8, auth: &[u8; 16]) -> Vec<u8> {
    let mut d = vec![MS_CHALLENGE, id, 0, 0, 16];
    d.extend_from_slice(auth);
    d.extend_from_slice(b"gateway");
    let l = (d.len() as u16).to_be_bytes();
    d[2..4].copy_from_slice(&l);
    request(id, MSCHAPV2, &d)
}

/// The authenticator's side, from the same RFC 2759 functions: checks the peer's
/// response and returns "S=..." when the password is right.
fn authenticator(resp: &[u8], auth: &[u8; 16], password: &str) -> Option<String> {
    let (_, _, body) = header(resp).ok()?;
    assert_eq!(body[0], MSCHAPV2);
    let d = &body[1..];
    assert_eq!(d[0], MS_RESPONSE);
    assert_eq!(d[4], 49);
    let peer: [u8; 16] = d[5..21].try_into().ok()?;
    let nt: [u8; 24] = d[29..53].try_into().ok()?;
    let user = &d[54..];
    (mschapv2::nt_response(auth, &peer, user, password) == nt).then(|| {
        let s = mschapv2::authenticator_response(password, &nt, &peer, auth, user);
        format!("S={} M=welcome", hex::encode_upper(s))
    })
}

fn success_request(id: u8, text: &str) -> Vec<u8> {
    let mut d = vec![MS_SUCCESS, id, 0, 0];
    d.extend_from_slice(text.as_bytes());
    let l = (d.len() as u16).to_be_bytes();
    d[2..4].copy_from_slice(&l);
    request(id, MSCHAPV2, &d)
}

#[test]
fn identity_mschapv2_and_success_give_the_msk() {
    let mut rng = test_rng(1);
    let mut p = Peer::new(creds("s3cret"));
    let Step::Respond(r) = p.on_request(&request(1, IDENTITY, b""), &mut rng).unwrap() else {
        panic!()
    };
    assert_eq!(&r[5..], b"alice@example.org");
    let auth = [7u8; 16];
    let Step::Respond(r) = p.on_request(&challenge(2, &auth), &mut rng).unwrap() else {
        panic!()
    };
    assert_eq!(r[1], 2, "the response carries the request's identifier");
    let s = authenticator(&r, &auth, "s3cret").expect("the right password is accepted");
    assert!(authenticator(&r, &auth, "wrong").is_none());
    let Step::Respond(r) = p.on_request(&success_request(3, &s), &mut rng).unwrap() else {
        panic!()
    };
    assert_eq!(r, vec![RESPONSE, 3, 0, 6, MSCHAPV2, MS_SUCCESS]);
    let Step::Success(Some(msk)) = p.on_request(&[SUCCESS, 4, 0, 4], &mut rng).unwrap() else {
        panic!()
    };
    assert_eq!(msk.len(), 64);
}

#[test]
fn a_gateway_that_does_not_know_the_password_is_refused() {
    let mut rng = test_rng(2);
    let mut p = Peer::new(creds("s3cret"));
    let auth = [9u8; 16];
    let Step::Respond(r) = p.on_request(&challenge(1, &auth), &mut rng).unwrap() else {
        panic!()
    };
    // A rogue gateway accepts anything and makes up its proof with another password.
    let mut forged = r.clone();
    let d = &mut forged[5..];
    let peer: [u8; 16] = d[5..21].try_into().unwrap();
    let nt: [u8; 24] = d[29..53].try_into().unwrap();
    let s = mschapv2::authenticator_response("guess", &nt, &peer, &auth, b"alice");
    let text = format!("S={}", hex::encode_upper(s));
    assert_eq!(
        p.on_request(&success_request(2, &text), &mut rng),
        Err(EapError::BadAuthenticatorResponse)
    );
    // And EAP Success without the method's success is not trusted either.
    let mut p = Peer::new(creds("s3cret"));
    assert!(matches!(
        p.on_request(&[SUCCESS, 1, 0, 4], &mut rng),
        Err(EapError::Malformed(_))
    ));
}

#[test]
fn failure_is_one_sentence_with_the_gateways_reason() {
    let mut rng = test_rng(3);
    let mut p = Peer::new(creds("x"));
    let _ = p.on_request(&challenge(1, &[1; 16]), &mut rng).unwrap();
    let mut d = vec![MS_FAILURE, 1, 0, 0];
    d.extend_from_slice(b"E=691 R=0 C=00000000000000000000000000000000 V=3 M=bad\x07 password");
    let e = p
        .on_request(&request(2, MSCHAPV2, &d), &mut rng)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the gateway refused the user name or password (authentication failure: bad password)"
    );
}

#[test]
fn gtc_answers_the_passcode() {
    let mut rng = test_rng(4);
    let mut p = Peer::new(creds("123456"));
    let Step::Respond(r) = p
        .on_request(&request(5, GTC, b"Passcode:"), &mut rng)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(&r[5..], b"123456");
    assert_eq!(
        p.on_request(&[SUCCESS, 6, 0, 4], &mut rng),
        Ok(Step::Success(None))
    );
}

#[test]
fn hostile_packets_are_typed_errors() {
    let mut rng = test_rng(5);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![1, 1, 0],
        vec![1, 1, 0, 3],
        vec![1, 1, 0xff, 0xff, 1],
        vec![1, 1, 0, 4],
        vec![1, 1, 0, 5, MSCHAPV2],
        request(1, MSCHAPV2, &[MS_CHALLENGE, 1, 0, 5]),
        request(1, MSCHAPV2, &[MS_CHALLENGE, 1, 0, 0xff, 16, 1, 2]),
        request(
            1,
            MSCHAPV2,
            &[MS_CHALLENGE, 1, 0, 6, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        request(1, MSCHAPV2, &[MS_SUCCESS, 1, 0, 4]),
        request(1, MSCHAPV2, &[99, 1, 0, 4]),
        request(1, NAK, b""),
        vec![9, 1, 0, 4],
    ];
    for c in cases {
        let mut p = Peer::new(creds("pw"));
        assert!(p.on_request(&c, &mut rng).is_err(), "{c:?}");
    }
    // A short challenge in a long packet: the value size is what counts.
    let mut p = Peer::new(creds("pw"));
    let mut d = vec![MS_CHALLENGE, 1, 0, 20, 16];
    d.extend_from_slice(&[0; 10]);
    assert!(p.on_request(&request(1, MSCHAPV2, &d), &mut rng).is_err());
}

#[test]
fn an_unknown_method_is_nakked_and_named_if_the_gateway_gives_up() {
    let mut rng = test_rng(6);
    let mut p = Peer::new(creds("pw"));
    let Step::Respond(r) = p.on_request(&request(1, 13, b"tls"), &mut rng).unwrap() else {
        panic!()
    };
    assert_eq!(r, vec![RESPONSE, 1, 0, 7, NAK, MSCHAPV2, GTC]);
    assert_eq!(
        p.on_request(&[FAILURE, 2, 0, 4], &mut rng),
        Err(EapError::UnsupportedMethod(13))
    );
}
