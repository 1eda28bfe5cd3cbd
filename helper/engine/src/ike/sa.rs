//! SA payloads: building our offers and checking or choosing proposals
//! (RFC 2409 §5, RFC 2407 §4.5).

use std::time::Duration;

use crate::algs::{DhGroup, EspAuth, EspCipher, EspProposal, HashAlg, IkeCipher, IkeProposal};
use crate::codec::{
    AttrValue, Attribute, Proposal, ProtocolId, SaPayload, Transform, attr, ipsec_attr,
};

use super::{Encapsulation, Error};

pub(crate) const DOI_IPSEC: u32 = 1;
pub(crate) const SIT_IDENTITY_ONLY: u32 = 1;
const KEY_IKE: u8 = 1;

/// Lifetimes longer than a day are clamped when read from a peer.
const MAX_LIFETIME: u64 = 7 * 24 * 3600;

/// Phase 1 SA: one ISAKMP proposal with one transform per configured proposal.
pub(crate) fn ike_offer(
    proposals: &[IkeProposal],
    auth_method: u16,
    lifetime: Duration,
) -> SaPayload {
    let transforms = proposals
        .iter()
        .enumerate()
        .map(|(i, p)| ike_transform(i as u8 + 1, p, auth_method, lifetime))
        .collect();
    SaPayload {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::ISAKMP,
            spi: Vec::new(),
            transforms,
        }],
    }
}

fn ike_transform(number: u8, p: &IkeProposal, auth_method: u16, lifetime: Duration) -> Transform {
    let mut attributes = vec![Attribute::basic(
        attr::ENCRYPTION_ALGORITHM,
        p.cipher.ike_id(),
    )];
    if let Some(bits) = p.cipher.key_length_attr() {
        attributes.push(Attribute::basic(attr::KEY_LENGTH, bits));
    }
    attributes.push(Attribute::basic(attr::HASH_ALGORITHM, p.hash.ike_id()));
    attributes.push(Attribute::basic(attr::AUTHENTICATION_METHOD, auth_method));
    attributes.push(Attribute::basic(attr::GROUP_DESCRIPTION, p.group.ike_id()));
    attributes.push(Attribute::basic(attr::LIFE_TYPE, attr::SECONDS));
    attributes.push(life_attr(attr::LIFE_DURATION, lifetime.as_secs()));
    Transform {
        number,
        id: KEY_IKE,
        attributes,
    }
}

fn life_attr(kind: u16, v: u64) -> Attribute {
    if v <= u16::MAX as u64 {
        Attribute::basic(kind, v as u16)
    } else if v <= u32::MAX as u64 {
        Attribute::variable(kind, (v as u32).to_be_bytes().to_vec())
    } else {
        Attribute::variable(kind, v.to_be_bytes().to_vec())
    }
}

/// What a phase 1 transform says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IkeChoice {
    pub proposal: IkeProposal,
    pub auth_method: u16,
    pub lifetime: Option<Duration>,
}

fn parse_ike_transform(t: &Transform) -> Result<IkeChoice, String> {
    if t.id != KEY_IKE {
        return Err(format!("transform id {} is not KEY_IKE", t.id));
    }
    let (mut enc, mut hash, mut auth, mut group, mut keylen) = (None, None, None, None, None);
    let mut life_type = None;
    let mut lifetime = None;
    for a in &t.attributes {
        let basic = match a.value {
            AttrValue::Basic(v) => Some(v),
            AttrValue::Variable(_) => None,
        };
        match a.kind {
            attr::ENCRYPTION_ALGORITHM => enc = basic,
            attr::HASH_ALGORITHM => hash = basic,
            attr::AUTHENTICATION_METHOD => auth = basic,
            attr::GROUP_DESCRIPTION => group = basic,
            attr::KEY_LENGTH => keylen = basic,
            attr::LIFE_TYPE => life_type = basic,
            attr::LIFE_DURATION if life_type == Some(attr::SECONDS) => {
                lifetime = a.as_u64().map(|s| Duration::from_secs(s.min(MAX_LIFETIME)));
            }
            // PRF, group type/prime/generator (custom groups) and the like: refuse.
            attr::PRF | attr::GROUP_TYPE | attr::FIELD_SIZE | attr::GROUP_ORDER => {
                return Err(format!("unsupported attribute {}", a.kind));
            }
            _ => {}
        }
    }
    let enc = enc.ok_or("no encryption algorithm")?;
    let cipher =
        IkeCipher::from_ike(enc, keylen).ok_or_else(|| format!("unsupported cipher {enc}"))?;
    let hash = hash.ok_or("no hash algorithm")?;
    let hash = HashAlg::from_ike(hash).ok_or_else(|| format!("unsupported hash {hash}"))?;
    let group = group.ok_or("no DH group")?;
    let group = DhGroup::from_ike(group).ok_or_else(|| format!("unsupported DH group {group}"))?;
    let auth_method = auth.ok_or("no authentication method")?;
    Ok(IkeChoice {
        proposal: IkeProposal {
            cipher,
            hash,
            group,
        },
        auth_method,
        lifetime,
    })
}

/// Initiator: the responder's answer must be exactly one of the transforms we offered.
pub(crate) fn check_ike_reply(
    sa: &SaPayload,
    offered: &[IkeProposal],
    auth_method: u16,
) -> Result<IkeChoice, Error> {
    let bad = |why: String| {
        Error::NoProposalChosen(format!("the gateway's phase 1 answer is invalid: {why}"))
    };
    if sa.doi != DOI_IPSEC {
        return Err(bad(format!("DOI {}", sa.doi)));
    }
    let [p] = sa.proposals.as_slice() else {
        return Err(bad(format!(
            "{} proposals in the reply",
            sa.proposals.len()
        )));
    };
    let [t] = p.transforms.as_slice() else {
        return Err(bad(format!(
            "{} transforms in the reply",
            p.transforms.len()
        )));
    };
    let choice = parse_ike_transform(t).map_err(bad)?;
    if !offered.contains(&choice.proposal) {
        return Err(bad(format!(
            "it chose {}, which we did not offer",
            choice.proposal
        )));
    }
    if choice.auth_method != auth_method {
        return Err(bad(format!(
            "it chose authentication method {}",
            choice.auth_method
        )));
    }
    Ok(choice)
}

/// Responder: the first of the peer's transforms that we accept, in the peer's order.
/// Returns the transform to echo back and what it means.
pub(crate) fn choose_ike(
    sa: &SaPayload,
    acceptable: &[IkeProposal],
    auth_method: u16,
) -> Result<(SaPayload, IkeChoice), Error> {
    if sa.doi != DOI_IPSEC || sa.situation != SIT_IDENTITY_ONLY {
        return Err(Error::NoProposalChosen(format!(
            "unsupported DOI {} / situation {}",
            sa.doi, sa.situation
        )));
    }
    for p in &sa.proposals {
        if p.protocol != ProtocolId::ISAKMP {
            continue;
        }
        for t in &p.transforms {
            if let Ok(c) = parse_ike_transform(t)
                && acceptable.contains(&c.proposal)
                && c.auth_method == auth_method
            {
                let reply = SaPayload {
                    doi: DOI_IPSEC,
                    situation: SIT_IDENTITY_ONLY,
                    proposals: vec![Proposal {
                        number: p.number,
                        protocol: ProtocolId::ISAKMP,
                        spi: p.spi.clone(),
                        transforms: vec![t.clone()],
                    }],
                };
                return Ok((reply, c));
            }
        }
    }
    Err(Error::NoProposalChosen(
        "none of the peer's phase 1 proposals is acceptable".into(),
    ))
}

/// The phase 2 proposals that fit in one quick mode offer. A quick mode carries at most
/// one KE payload, so every transform of the offer must name the same PFS group (or
/// none). The group: the one phase 1 negotiated when some proposal names it (a gateway
/// that accepted it for phase 1 is the likeliest to accept it for PFS, and strongSwan's
/// client prefers it the same way), else the first proposal's (`None`: no PFS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EspSelection {
    /// The PFS group of the offer.
    pub group: Option<DhGroup>,
    /// Offered, in the profile's order.
    pub offered: Vec<EspProposal>,
    /// Left out (another group, or none while the offer has one), in the profile's order.
    pub left_out: Vec<EspProposal>,
    /// The group came from phase 1 rather than from the first proposal.
    pub from_phase1: bool,
}

pub(crate) fn select_esp(proposals: &[EspProposal], phase1: Option<DhGroup>) -> EspSelection {
    let from_phase1 = phase1.is_some_and(|g| proposals.iter().any(|p| p.group == Some(g)));
    let group = if from_phase1 {
        phase1
    } else {
        proposals.first().and_then(|p| p.group)
    };
    let (offered, left_out) = proposals.iter().partition(|p| p.group == group);
    EspSelection {
        group,
        offered,
        left_out,
        from_phase1: from_phase1 && proposals.first().is_some_and(|p| p.group != group),
    }
}

impl EspSelection {
    /// One line for the log when some proposals were left out; `None` when all fit.
    pub(crate) fn note(&self) -> Option<String> {
        if self.left_out.is_empty() {
            return None;
        }
        let list = |v: &[EspProposal]| {
            v.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let why = match self.group {
            Some(g) if self.from_phase1 => format!("PFS {}, the group phase 1 agreed on", g.name()),
            Some(g) => format!("PFS {}, the first proposal's group", g.name()),
            None => "no PFS, as the first proposal asks".to_string(),
        };
        Some(format!(
            "phase2 offer: {} ({why}); left out: {} (a quick mode carries one key exchange, so one PFS group)",
            list(&self.offered),
            list(&self.left_out),
        ))
    }
}

/// Phase 2 offer: one ESP proposal with one transform per given proposal (all sharing
/// one PFS group, since a quick mode carries one KE: see [`select_esp`]).
pub(crate) fn esp_offer(
    proposals: &[EspProposal],
    spi: u32,
    mode: u16,
    lifetime: Duration,
    lifetime_kb: Option<u64>,
) -> SaPayload {
    let transforms = proposals
        .iter()
        .enumerate()
        .map(|(i, p)| esp_transform(i as u8 + 1, p, mode, lifetime, lifetime_kb))
        .collect();
    SaPayload {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }],
    }
}

fn esp_transform(
    number: u8,
    p: &EspProposal,
    mode: u16,
    lifetime: Duration,
    kb: Option<u64>,
) -> Transform {
    let mut attributes = vec![
        Attribute::basic(ipsec_attr::SA_LIFE_TYPE, ipsec_attr::SECONDS),
        life_attr(ipsec_attr::SA_LIFE_DURATION, lifetime.as_secs()),
    ];
    if let Some(kb) = kb {
        attributes.push(Attribute::basic(
            ipsec_attr::SA_LIFE_TYPE,
            ipsec_attr::KILOBYTES,
        ));
        attributes.push(life_attr(ipsec_attr::SA_LIFE_DURATION, kb));
    }
    if let Some(g) = p.group {
        attributes.push(Attribute::basic(ipsec_attr::GROUP_DESCRIPTION, g.ike_id()));
    }
    attributes.push(Attribute::basic(ipsec_attr::ENCAPSULATION_MODE, mode));
    if let Some(a) = p.auth {
        attributes.push(Attribute::basic(
            ipsec_attr::AUTHENTICATION_ALGORITHM,
            a.ike_id(),
        ));
    }
    if let Some(bits) = p.cipher.key_length_attr() {
        attributes.push(Attribute::basic(ipsec_attr::KEY_LENGTH, bits));
    }
    Transform {
        number,
        id: p.cipher.transform_id(),
        attributes,
    }
}

/// The ENCAPSULATION_MODE value: plain, or UDP-encapsulated in the agreed NAT-T dialect.
pub(crate) fn encap_mode(e: Encapsulation, udp: Option<super::NattVersion>) -> u16 {
    let tunnel = e == Encapsulation::Tunnel;
    match udp {
        Some(v) => v.udp_mode(tunnel),
        None if tunnel => ipsec_attr::TUNNEL,
        None => ipsec_attr::TRANSPORT,
    }
}

/// What an ESP transform says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EspChoice {
    pub proposal: EspProposal,
    pub encapsulation: Encapsulation,
    /// UDP-encapsulated (NAT-T) mode.
    pub udp: bool,
    pub lifetime: Option<Duration>,
    pub lifetime_kb: Option<u64>,
}

pub(crate) fn parse_esp_transform(t: &Transform) -> Result<EspChoice, String> {
    let (mut auth, mut group, mut keylen, mut mode) = (None, None, None, None);
    let mut life_type = None;
    let (mut lifetime, mut lifetime_kb) = (None, None);
    for a in &t.attributes {
        let basic = match a.value {
            AttrValue::Basic(v) => Some(v),
            AttrValue::Variable(_) => None,
        };
        match a.kind {
            ipsec_attr::SA_LIFE_TYPE => life_type = basic,
            ipsec_attr::SA_LIFE_DURATION => match life_type {
                Some(ipsec_attr::SECONDS) => {
                    lifetime = a.as_u64().map(|s| Duration::from_secs(s.min(MAX_LIFETIME)))
                }
                Some(ipsec_attr::KILOBYTES) => lifetime_kb = a.as_u64(),
                _ => return Err("lifetime without a known life type".into()),
            },
            ipsec_attr::GROUP_DESCRIPTION => group = basic,
            ipsec_attr::ENCAPSULATION_MODE => mode = basic,
            ipsec_attr::AUTHENTICATION_ALGORITHM => auth = basic,
            ipsec_attr::KEY_LENGTH => keylen = basic,
            ipsec_attr::KEY_ROUNDS => return Err("key rounds are not supported".into()),
            _ => {}
        }
    }
    let cipher = EspCipher::from_ike(t.id, keylen)
        .ok_or_else(|| format!("unsupported ESP transform {}", t.id))?;
    let auth = match auth {
        Some(a) => Some(
            EspAuth::from_ike(a).ok_or_else(|| format!("unsupported ESP authentication {a}"))?,
        ),
        None => None,
    };
    if !cipher.is_aead() && auth.is_none() {
        return Err("integrity algorithm missing".into());
    }
    if cipher.is_aead() && auth.is_some() {
        return Err("an AEAD cipher with an integrity algorithm".into());
    }
    let group = match group {
        Some(g) => Some(DhGroup::from_ike(g).ok_or_else(|| format!("unsupported PFS group {g}"))?),
        None => None,
    };
    let (encapsulation, udp) = match mode {
        Some(ipsec_attr::TUNNEL) | None => (Encapsulation::Tunnel, false),
        Some(ipsec_attr::TRANSPORT) => (Encapsulation::Transport, false),
        Some(ipsec_attr::UDP_TUNNEL_RFC | ipsec_attr::UDP_TUNNEL_DRAFT) => {
            (Encapsulation::Tunnel, true)
        }
        Some(ipsec_attr::UDP_TRANSPORT_RFC | ipsec_attr::UDP_TRANSPORT_DRAFT) => {
            (Encapsulation::Transport, true)
        }
        Some(m) => return Err(format!("unsupported encapsulation mode {m}")),
    };
    Ok(EspChoice {
        proposal: EspProposal {
            cipher,
            auth,
            group,
        },
        encapsulation,
        udp,
        lifetime,
        lifetime_kb,
    })
}

/// Initiator: the reply must carry one ESP proposal with one transform we offered.
/// Returns the choice and the peer's SPI.
pub(crate) fn check_esp_reply(
    sa: &SaPayload,
    offered: &[EspProposal],
    encap: Encapsulation,
    udp: bool,
) -> Result<(EspChoice, u32), Error> {
    let bad = |why: String| {
        Error::NoProposalChosen(format!("the gateway's phase 2 answer is invalid: {why}"))
    };
    let [p] = sa.proposals.as_slice() else {
        return Err(bad(format!(
            "{} proposals in the reply",
            sa.proposals.len()
        )));
    };
    if p.protocol != ProtocolId::ESP {
        return Err(bad(format!("protocol {}", p.protocol.0)));
    }
    let spi = spi_u32(&p.spi).ok_or_else(|| bad(format!("SPI of {} bytes", p.spi.len())))?;
    let [t] = p.transforms.as_slice() else {
        return Err(bad(format!(
            "{} transforms in the reply",
            p.transforms.len()
        )));
    };
    let choice = parse_esp_transform(t).map_err(bad)?;
    if !offered.contains(&choice.proposal) {
        return Err(bad(format!(
            "it chose {}, which we did not offer",
            choice.proposal
        )));
    }
    if choice.encapsulation != encap || choice.udp != udp {
        return Err(bad("it chose another encapsulation mode".into()));
    }
    Ok((choice, spi))
}

/// Responder: pick the first acceptable ESP transform. Returns the reply SA
/// (with `our_spi`), the choice and the peer's SPI.
pub(crate) fn choose_esp(
    sa: &SaPayload,
    acceptable: &[EspProposal],
    our_spi: u32,
) -> Result<(SaPayload, EspChoice, u32), Error> {
    for p in &sa.proposals {
        if p.protocol != ProtocolId::ESP {
            continue;
        }
        let Some(peer_spi) = spi_u32(&p.spi) else {
            continue;
        };
        for t in &p.transforms {
            if let Ok(c) = parse_esp_transform(t)
                && acceptable.contains(&c.proposal)
            {
                let reply = SaPayload {
                    doi: DOI_IPSEC,
                    situation: SIT_IDENTITY_ONLY,
                    proposals: vec![Proposal {
                        number: p.number,
                        protocol: ProtocolId::ESP,
                        spi: our_spi.to_be_bytes().to_vec(),
                        transforms: vec![t.clone()],
                    }],
                };
                return Ok((reply, c, peer_spi));
            }
        }
    }
    Err(Error::NoProposalChosen(
        "none of the peer's phase 2 proposals is acceptable".into(),
    ))
}

pub(crate) fn spi_u32(b: &[u8]) -> Option<u32> {
    let a: [u8; 4] = b.try_into().ok()?;
    let v = u32::from_be_bytes(a);
    // SPIs 1..=255 are reserved by IANA; 0 is invalid.
    (v > 255).then_some(v)
}

/// RESPONDER-LIFETIME notify data: the attributes that lower our lifetimes.
pub(crate) fn parse_responder_lifetime(data: &[u8]) -> (Option<Duration>, Option<u64>) {
    let mut r = crate::codec::Reader::named(data, "RESPONDER-LIFETIME data");
    let Ok(attrs) = Attribute::read_all(&mut r) else {
        return (None, None);
    };
    let (mut secs, mut kb, mut ty) = (None, None, None);
    for a in attrs {
        match a.kind {
            ipsec_attr::SA_LIFE_TYPE => {
                ty = match a.value {
                    AttrValue::Basic(v) => Some(v),
                    _ => None,
                }
            }
            ipsec_attr::SA_LIFE_DURATION => match ty {
                Some(ipsec_attr::SECONDS) => {
                    secs = a.as_u64().map(|s| Duration::from_secs(s.min(MAX_LIFETIME)))
                }
                Some(ipsec_attr::KILOBYTES) => kb = a.as_u64(),
                _ => {}
            },
            _ => {}
        }
    }
    (secs, kb)
}

pub(crate) fn responder_lifetime_data(lifetime: Duration) -> Vec<u8> {
    let attrs = [
        Attribute::basic(ipsec_attr::SA_LIFE_TYPE, ipsec_attr::SECONDS),
        life_attr(ipsec_attr::SA_LIFE_DURATION, lifetime.as_secs()),
    ];
    let mut out = Vec::new();
    Attribute::encode_all(&attrs, &mut out);
    out
}
