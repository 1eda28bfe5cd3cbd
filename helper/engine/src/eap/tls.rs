//! EAP-TLS, peer side (RFC 5216; RFC 9190 when TLS 1.3 is negotiated).
//!
//! Two layers. [`Framing`] is the EAP-TLS packet format: the Flags octet (L: a
//! 4-byte TLS message length follows, M: more fragments, S: start), our TLS flight
//! cut into fragments of at most [`FRAGMENT`] bytes (one per EAP round, the gateway
//! acknowledging each with an empty request), the gateway's fragments acknowledged
//! with an empty response and put together within [`MAX_MESSAGE`]. [`TlsPeer`] drives
//! a rustls client on those buffers (no socket): the gateway's TLS certificate is
//! checked by the engine's own chain, CRL and identity checks ([`crate::cert`]), our
//! certificate and key come from the profile, and the MSK is the TLS exporter's
//! (RFC 5216 §2.3 for TLS 1.2, RFC 9190 §2.3 for TLS 1.3).
//!
//! rustls takes its randomness (client random, ECDHE keys) from ring's OS RNG, not
//! from the engine's: the only part of the engine that does. Our RSA signatures use
//! a ChaCha RNG seeded from the engine's.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConnection, ResolvesClientCert, Resumption};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureAlgorithm, SignatureScheme,
};
use zeroize::Zeroizing;

use super::EapError;
use crate::cert::{self, CertError, Certificate, Crl, PrivateKey};
use crate::crypto::Rng;
use crate::ike::{Certs, Identity};

/// The EAP method type of EAP-TLS.
pub const TLS: u8 = 13;

const FLAG_L: u8 = 0x80;
const FLAG_M: u8 = 0x40;
const FLAG_S: u8 = 0x20;

/// Most TLS bytes we put in one EAP-TLS response (the EAP packet is at most 10 bytes
/// more), so that an IKE_AUTH message stays well below the fragmentation threshold.
pub const FRAGMENT: usize = 1000;

/// The longest TLS message (one flight) we accept from the gateway, all fragments
/// together: a certificate chain of a few certificates fits many times.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What one EAP-TLS request from the gateway is.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The EAP-TLS Start (S flag): our ClientHello is due.
    Start,
    /// An empty request: the gateway took our last fragment; the next one is due.
    Ack,
    /// One fragment of a longer message; more follow after our acknowledgement.
    Fragment,
    /// A whole TLS message (one or more records), reassembled.
    Message(Vec<u8>),
}

/// The EAP-TLS packet layer: fragments in both directions, with bounds.
pub struct Framing {
    fragment: usize,
    /// The gateway's message being put together, and the length it announced.
    rx: Vec<u8>,
    rx_total: Option<usize>,
    /// Our flight still to send (what is left after the fragments sent).
    tx: Vec<u8>,
    /// Whether the first fragment of `tx` is out (the L flag is on the first only).
    tx_started: bool,
    tx_total: usize,
}

impl Framing {
    pub fn new(fragment: usize) -> Self {
        Framing {
            fragment: fragment.max(1),
            rx: Vec::new(),
            rx_total: None,
            tx: Vec::new(),
            tx_started: false,
            tx_total: 0,
        }
    }

    /// Whether a flight of ours is only partly sent.
    pub fn sending(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Our next TLS flight (sent by the next [`Framing::next_response`] calls).
    pub fn queue(&mut self, flight: Vec<u8>) {
        self.tx_total = flight.len();
        self.tx = flight;
        self.tx_started = false;
    }

    /// The type data (Flags onward) of one EAP-TLS request from the gateway.
    pub fn receive(&mut self, data: &[u8]) -> Result<Incoming, EapError> {
        let (&flags, mut rest) = data
            .split_first()
            .ok_or(EapError::Malformed("EAP-TLS request without flags"))?;
        if flags & FLAG_S != 0 {
            if !self.rx.is_empty() || self.sending() {
                return Err(EapError::Malformed(
                    "EAP-TLS start in the middle of a message",
                ));
            }
            return Ok(Incoming::Start);
        }
        if flags & FLAG_L != 0 {
            let [a, b, c, d, tail @ ..] = rest else {
                return Err(EapError::Malformed("EAP-TLS length field truncated"));
            };
            let total = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            if total > MAX_MESSAGE {
                return Err(EapError::Malformed(
                    "EAP-TLS message announced longer than 64 KiB",
                ));
            }
            match self.rx_total {
                None if self.rx.is_empty() => self.rx_total = Some(total),
                Some(t) if t == total => {}
                _ => {
                    return Err(EapError::Malformed(
                        "EAP-TLS message length changed between fragments",
                    ));
                }
            }
            rest = tail;
        }
        let more = flags & FLAG_M != 0;
        if self.sending() {
            if !rest.is_empty() || more {
                return Err(EapError::Malformed(
                    "the gateway sent EAP-TLS data before taking our whole message",
                ));
            }
            return Ok(Incoming::Ack);
        }
        if rest.is_empty() && !more && self.rx.is_empty() {
            return Ok(Incoming::Ack);
        }
        let limit = self.rx_total.unwrap_or(MAX_MESSAGE);
        if self.rx.len() + rest.len() > limit {
            return Err(EapError::Malformed(
                "EAP-TLS fragments longer than the message",
            ));
        }
        self.rx.extend_from_slice(rest);
        if more {
            return Ok(Incoming::Fragment);
        }
        if self.rx_total.is_some_and(|t| t != self.rx.len()) {
            return Err(EapError::Malformed(
                "EAP-TLS message shorter than its announced length",
            ));
        }
        self.rx_total = None;
        Ok(Incoming::Message(std::mem::take(&mut self.rx)))
    }

    /// The type data of our next response: the next fragment of our flight, or an
    /// acknowledgement (Flags 0, no data) when nothing is queued.
    pub fn next_response(&mut self) -> Vec<u8> {
        if self.tx.is_empty() {
            return vec![0];
        }
        let n = self.fragment.min(self.tx.len());
        let more = n < self.tx.len();
        let mut out = Vec::with_capacity(n + 5);
        let first = !self.tx_started;
        if first && more {
            out.push(FLAG_L | FLAG_M);
            out.extend_from_slice(&(self.tx_total as u32).to_be_bytes());
        } else {
            out.push(if more { FLAG_M } else { 0 });
        }
        out.extend(self.tx.drain(..n));
        self.tx_started = true;
        out
    }
}

/// What EAP-TLS needs from the profile.
pub struct TlsSetup {
    /// Our key and certificate chain, the CAs and CRLs for the gateway's.
    pub certs: Arc<Certs>,
    /// The identity the gateway's TLS certificate must carry, if the profile names one.
    pub server_id: Option<Identity>,
    /// The wall time certificates are checked at.
    pub at: SystemTime,
    /// Only TLS 1.2 (what strongSwan negotiates by default) or 1.2 and 1.3.
    pub allow_tls13: bool,
}

/// The EAP-TLS conversation: a rustls client on buffers.
pub struct TlsPeer {
    /// The client config until the gateway's Start.
    setup: Option<Arc<ClientConfig>>,
    refused: Arc<Mutex<Option<CertError>>>,
    conn: Option<ClientConnection>,
    framing: Framing,
    msk: Option<Zeroizing<Vec<u8>>>,
    /// TLS 1.3: the gateway's protected success indication (RFC 9190 §2.5) seen.
    success_indication: bool,
}

impl TlsPeer {
    /// `rng` seeds the RNG of our RSA signatures.
    pub fn new(setup: TlsSetup, rng: &mut dyn Rng) -> Result<TlsPeer, EapError> {
        let refused = Arc::new(Mutex::new(None));
        // ring without post-quantum key exchange (that needs aws-lc): TLS 1.2/1.3 with
        // x25519 and the NIST curves is what EAP-TLS servers speak.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let key = setup
            .certs
            .key
            .as_ref()
            .ok_or_else(|| EapError::Tls("EAP-TLS needs our private key".into()))?;
        let kind = key.kind();
        if setup.certs.chain.is_empty() {
            return Err(EapError::Tls("EAP-TLS needs our certificate".into()));
        }
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let signing = Arc::new(OurKey {
            certs: setup.certs.clone(),
            kind,
            rng: Arc::new(Mutex::new(ChaCha20Rng::from_seed(seed))),
        });
        let certified = Arc::new(CertifiedKey::new(
            setup
                .certs
                .chain
                .iter()
                .map(|c| CertificateDer::from(c.der().to_vec()))
                .collect(),
            signing,
        ));
        let verifier = Arc::new(GatewayVerifier {
            trusted: setup.certs.trusted.clone(),
            crls: setup.certs.crls.clone(),
            server_id: setup.server_id.clone(),
            at: setup.at,
            algs,
            refused: refused.clone(),
        });
        let versions: &[&rustls::SupportedProtocolVersion] = if setup.allow_tls13 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS12]
        };
        let at = setup.at;
        let mut config = ClientConfig::builder_with_details(provider, Arc::new(FixedTime(at)))
            .with_protocol_versions(versions)
            .map_err(|e| EapError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(OurCert(certified)));
        config.enable_sni = false;
        config.resumption = Resumption::disabled();
        Ok(TlsPeer {
            setup: Some(Arc::new(config)),
            refused,
            conn: None,
            framing: Framing::new(FRAGMENT),
            msk: None,
            success_indication: false,
        })
    }

    /// The MSK once the handshake (and for TLS 1.3 the success indication) is done.
    pub fn msk(&self) -> Option<&Zeroizing<Vec<u8>>> {
        self.msk.as_ref()
    }

    /// Whether the TLS handshake started (the gateway sent its Start).
    pub fn started(&self) -> bool {
        self.conn.is_some()
    }

    /// One EAP-TLS request's type data (Flags onward); our response's type data.
    pub fn on_request(&mut self, data: &[u8]) -> Result<Vec<u8>, EapError> {
        match self.framing.receive(data)? {
            Incoming::Start => {
                let Some(config) = self.setup.take() else {
                    return Err(EapError::Malformed("a second EAP-TLS start"));
                };
                let name = ServerName::try_from("eap-tls.invalid")
                    .map_err(|e| EapError::Tls(e.to_string()))?;
                let conn = ClientConnection::new(config, name)
                    .map_err(|e| EapError::Tls(e.to_string()))?;
                self.conn = Some(conn);
                self.flush()?;
                Ok(self.framing.next_response())
            }
            Incoming::Ack | Incoming::Fragment => Ok(self.framing.next_response()),
            Incoming::Message(m) => {
                self.feed(&m)?;
                self.flush()?;
                Ok(self.framing.next_response())
            }
        }
    }

    /// The gateway's TLS bytes into rustls.
    fn feed(&mut self, m: &[u8]) -> Result<(), EapError> {
        let conn = self
            .conn
            .as_mut()
            .ok_or(EapError::Malformed("EAP-TLS data before the start"))?;
        let mut rd = m;
        // Each read_tls takes what fits rustls's buffer; bounded by the message size.
        for _ in 0..=MAX_MESSAGE / 512 + 1 {
            if rd.is_empty() {
                break;
            }
            let n = conn
                .read_tls(&mut rd)
                .map_err(|e| EapError::Tls(format!("TLS records from the gateway: {e}")))?;
            let res = conn.process_new_packets();
            if let Err(e) = res {
                return Err(self.tls_error(e));
            }
            if n == 0 {
                break;
            }
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or(EapError::Malformed("EAP-TLS data before the start"))?;
        // TLS 1.3: the protected success indication is one application-data byte 0x00.
        let mut app = [0u8; 64];
        if let Ok(n) = std::io::Read::read(&mut conn.reader(), &mut app) {
            match app.get(..n) {
                Some([]) | None => {}
                Some([0]) => self.success_indication = true,
                Some(_) => {
                    return Err(EapError::Tls(
                        "unexpected application data from the gateway's TLS server".into(),
                    ));
                }
            }
        }
        if !conn.is_handshaking() && self.msk.is_none() {
            let msk = match conn.protocol_version() {
                Some(ProtocolVersion::TLSv1_2) => conn
                    .export_keying_material(
                        Zeroizing::new(vec![0u8; 64]),
                        b"client EAP encryption",
                        None,
                    )
                    .map(Some),
                Some(ProtocolVersion::TLSv1_3) if self.success_indication => conn
                    .export_keying_material(
                        Zeroizing::new(vec![0u8; 128]),
                        b"EXPORTER_EAP_TLS_Key_Material",
                        Some(&[TLS]),
                    )
                    .map(|mut k| {
                        k.truncate(64);
                        Some(k)
                    }),
                Some(ProtocolVersion::TLSv1_3) => Ok(None),
                _ => return Err(EapError::Tls("unexpected TLS version".into())),
            };
            self.msk = msk.map_err(|e| EapError::Tls(e.to_string()))?;
        }
        Ok(())
    }

    /// What rustls wants to send, queued as our next flight.
    fn flush(&mut self) -> Result<(), EapError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::new();
        for _ in 0..64 {
            if !conn.wants_write() {
                break;
            }
            conn.write_tls(&mut out)
                .map_err(|e| EapError::Tls(e.to_string()))?;
        }
        if out.len() > MAX_MESSAGE {
            return Err(EapError::Tls("our TLS flight is longer than 64 KiB".into()));
        }
        if !out.is_empty() {
            self.framing.queue(out);
        }
        Ok(())
    }

    /// A rustls failure as the sentence for the user.
    fn tls_error(&mut self, e: rustls::Error) -> EapError {
        if let Some(c) = self.refused.lock().ok().and_then(|mut s| s.take()) {
            return EapError::ServerCertificate(c);
        }
        match e {
            rustls::Error::AlertReceived(a) => EapError::TlsRefused(alert_text(a)),
            other => EapError::Tls(other.to_string()),
        }
    }
}

/// An alert from the gateway as words.
fn alert_text(a: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let s = match a {
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "certificate revoked",
        A::CertificateExpired => "certificate expired",
        A::CertificateUnknown => "certificate unknown",
        A::UnknownCA => "unknown CA",
        A::AccessDenied => "access denied",
        A::HandshakeFailure => "handshake failure",
        A::DecryptError => "decrypt error",
        A::CertificateRequired => "certificate required",
        A::ProtocolVersion => "protocol version",
        A::InsufficientSecurity => "insufficient security",
        other => return format!("TLS alert {other:?}"),
    };
    format!("TLS alert \"{s}\"")
}

/// rustls asks for the time; the engine reads no clock, so it is the wall time given.
#[derive(Debug)]
struct FixedTime(SystemTime);

impl rustls::time_provider::TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        self.0
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(UnixTime::since_unix_epoch)
    }
}

/// The gateway's TLS certificate, checked as its IKE certificate is.
struct GatewayVerifier {
    trusted: Vec<Certificate>,
    crls: Vec<Crl>,
    server_id: Option<Identity>,
    at: SystemTime,
    algs: WebPkiSupportedAlgorithms,
    /// Why the certificate was refused, for the user (rustls's error says less).
    refused: Arc<Mutex<Option<CertError>>>,
}

impl fmt::Debug for GatewayVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayVerifier")
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

impl GatewayVerifier {
    fn check(&self, ee: &CertificateDer<'_>, rest: &[CertificateDer<'_>]) -> Result<(), CertError> {
        let mut chain = vec![Certificate::from_der(ee)?];
        for c in rest.iter().take(8) {
            chain.push(Certificate::from_der(c)?);
        }
        let ee = cert::validate_chain(&chain, &self.trusted, &self.crls, self.at)?;
        if let Some(id) = &self.server_id {
            cert::check_identity(ee, id)?;
        }
        Ok(())
    }
}

impl ServerCertVerifier for GatewayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                if let Ok(mut s) = self.refused.lock() {
                    *s = Some(e);
                }
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Our certificate, whatever CAs the gateway names (it has only the one).
#[derive(Debug)]
struct OurCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OurCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Our private key (the engine's cert module) as a rustls signing key.
struct OurKey {
    certs: Arc<Certs>,
    kind: cert::SigKind,
    rng: Arc<Mutex<ChaCha20Rng>>,
}

impl fmt::Debug for OurKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OurKey({:?}, <redacted>)", self.kind)
    }
}

/// The schemes we sign with, in our order of preference. PKCS#1 v1.5 first for
/// TLS 1.2 (every server takes it); rustls offers only PSS under TLS 1.3.
const RSA_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
];

impl SigningKey for OurKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let ours: &[SignatureScheme] = match self.kind {
            cert::SigKind::Rsa => &RSA_SCHEMES,
            cert::SigKind::EcdsaP256 => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            cert::SigKind::EcdsaP384 => &[SignatureScheme::ECDSA_NISTP384_SHA384],
            cert::SigKind::EcdsaP521 => &[SignatureScheme::ECDSA_NISTP521_SHA512],
        };
        let scheme = ours.iter().copied().find(|s| offered.contains(s))?;
        Some(Box::new(OurSigner {
            certs: self.certs.clone(),
            scheme,
            rng: self.rng.clone(),
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.kind {
            cert::SigKind::Rsa => SignatureAlgorithm::RSA,
            _ => SignatureAlgorithm::ECDSA,
        }
    }
}

struct OurSigner {
    certs: Arc<Certs>,
    scheme: SignatureScheme,
    rng: Arc<Mutex<ChaCha20Rng>>,
}

impl fmt::Debug for OurSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OurSigner({:?})", self.scheme)
    }
}

impl Signer for OurSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let key = self
            .certs
            .key
            .as_ref()
            .ok_or_else(|| rustls::Error::General("no private key".into()))?;
        sign(key, self.scheme, message, &self.rng)
            .map_err(|e| rustls::Error::General(format!("signing with our key failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// A TLS signature (the message hashed here; ECDSA as DER).
fn sign(
    key: &PrivateKey,
    scheme: SignatureScheme,
    message: &[u8],
    rng: &Mutex<ChaCha20Rng>,
) -> Result<Vec<u8>, String> {
    use sha2::{Digest, Sha256, Sha384, Sha512};
    type S = SignatureScheme;
    let mut rng = rng.lock().map_err(|_| "RNG poisoned".to_string())?;
    let rng: &mut ChaCha20Rng = &mut rng;
    match (key, scheme) {
        (PrivateKey::Rsa(k), S::RSA_PKCS1_SHA256) => k.sign_with_rng(
            rng,
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(message),
        ),
        (PrivateKey::Rsa(k), S::RSA_PKCS1_SHA384) => k.sign_with_rng(
            rng,
            rsa::Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(message),
        ),
        (PrivateKey::Rsa(k), S::RSA_PKCS1_SHA512) => k.sign_with_rng(
            rng,
            rsa::Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(message),
        ),
        (PrivateKey::Rsa(k), S::RSA_PSS_SHA256) => {
            k.sign_with_rng(rng, rsa::Pss::<Sha256>::new(), &Sha256::digest(message))
        }
        (PrivateKey::Rsa(k), S::RSA_PSS_SHA384) => {
            k.sign_with_rng(rng, rsa::Pss::<Sha384>::new(), &Sha384::digest(message))
        }
        (PrivateKey::Rsa(k), S::RSA_PSS_SHA512) => {
            k.sign_with_rng(rng, rsa::Pss::<Sha512>::new(), &Sha512::digest(message))
        }
        (PrivateKey::P256(k), S::ECDSA_NISTP256_SHA256) => {
            use p256::ecdsa::signature::Signer as _;
            let s: p256::ecdsa::Signature = k.try_sign(message).map_err(|e| e.to_string())?;
            return Ok(s.to_der().as_bytes().to_vec());
        }
        (PrivateKey::P384(k), S::ECDSA_NISTP384_SHA384) => {
            use p384::ecdsa::signature::Signer as _;
            let s: p384::ecdsa::Signature = k.try_sign(message).map_err(|e| e.to_string())?;
            return Ok(s.to_der().as_bytes().to_vec());
        }
        (PrivateKey::P521(k), S::ECDSA_NISTP521_SHA512) => {
            use p521::ecdsa::signature::Signer as _;
            let s: p521::ecdsa::Signature = k.try_sign(message).map_err(|e| e.to_string())?;
            return Ok(s.to_der().as_bytes().to_vec());
        }
        _ => return Err(format!("no signature {scheme:?} with this key")),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
