//! Protocol numbers as open newtypes (unknown values round-trip) and the
//! attribute number tables.

/// Declares an open newtype over an integer with named associated constants
/// and a `name()` lookup.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub struct $name:ident(pub $int:ty);
        $( $(#[$cmeta:meta])* $konst:ident = $val:expr, )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($val); )*

            /// The registry name of a known value, `None` for others.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$konst => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}

open_enum! {
    /// ISAKMP payload type (RFC 2408 §3.1, RFC 3947, Cisco fragmentation).
    pub struct PayloadType(pub u8);
    NONE = 0,
    SA = 1,
    PROPOSAL = 2,
    TRANSFORM = 3,
    KE = 4,
    ID = 5,
    CERT = 6,
    CERTREQ = 7,
    HASH = 8,
    SIG = 9,
    NONCE = 10,
    NOTIFY = 11,
    DELETE = 12,
    VENDOR_ID = 13,
    /// Mode Config / XAuth attribute payload (draft-dukes-ike-mode-cfg).
    ATTRIBUTE = 14,
    NAT_D = 20,
    NAT_OA = 21,
    /// NAT-D of draft-ietf-ipsec-nat-t-ike-02/03.
    NAT_D_DRAFT = 130,
    /// NAT-OA of draft-ietf-ipsec-nat-t-ike-02/03.
    NAT_OA_DRAFT = 131,
    /// Cisco/strongSwan IKEv1 fragment.
    FRAGMENT = 132,
}

open_enum! {
    /// ISAKMP exchange type (RFC 2408 §3.1, RFC 2409, mode-cfg draft).
    pub struct ExchangeType(pub u8);
    BASE = 1,
    /// Main mode.
    IDENTITY_PROTECTION = 2,
    AUTH_ONLY = 3,
    AGGRESSIVE = 4,
    INFORMATIONAL = 5,
    /// Mode Config / XAuth.
    TRANSACTION = 6,
    QUICK = 32,
    NEW_GROUP = 33,
}

impl ExchangeType {
    /// Alias of [`ExchangeType::IDENTITY_PROTECTION`].
    pub const MAIN: ExchangeType = ExchangeType::IDENTITY_PROTECTION;
}

open_enum! {
    /// Notify message type (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706).
    pub struct NotifyType(pub u16);
    INVALID_PAYLOAD_TYPE = 1,
    DOI_NOT_SUPPORTED = 2,
    SITUATION_NOT_SUPPORTED = 3,
    INVALID_COOKIE = 4,
    INVALID_MAJOR_VERSION = 5,
    INVALID_MINOR_VERSION = 6,
    INVALID_EXCHANGE_TYPE = 7,
    INVALID_FLAGS = 8,
    INVALID_MESSAGE_ID = 9,
    INVALID_PROTOCOL_ID = 10,
    INVALID_SPI = 11,
    INVALID_TRANSFORM_ID = 12,
    ATTRIBUTES_NOT_SUPPORTED = 13,
    NO_PROPOSAL_CHOSEN = 14,
    BAD_PROPOSAL_SYNTAX = 15,
    PAYLOAD_MALFORMED = 16,
    INVALID_KEY_INFORMATION = 17,
    INVALID_ID_INFORMATION = 18,
    INVALID_CERT_ENCODING = 19,
    INVALID_CERTIFICATE = 20,
    CERT_TYPE_UNSUPPORTED = 21,
    INVALID_CERT_AUTHORITY = 22,
    INVALID_HASH_INFORMATION = 23,
    AUTHENTICATION_FAILED = 24,
    INVALID_SIGNATURE = 25,
    ADDRESS_NOTIFICATION = 26,
    NOTIFY_SA_LIFETIME = 27,
    CERTIFICATE_UNAVAILABLE = 28,
    UNSUPPORTED_EXCHANGE_TYPE = 29,
    UNEQUAL_PAYLOAD_LENGTHS = 30,
    CONNECTED = 16384,
    /// RFC 2407 §4.6.3.1.
    RESPONDER_LIFETIME = 24576,
    /// RFC 2407 §4.6.3.2.
    REPLAY_STATUS = 24577,
    /// RFC 2407 §4.6.3.3.
    INITIAL_CONTACT = 24578,
    /// Dead peer detection, RFC 3706.
    R_U_THERE = 36136,
    R_U_THERE_ACK = 36137,
}

impl NotifyType {
    /// Error types are 1..=8191 (RFC 2408 §3.14.1); status types are 8192 and up.
    pub fn is_error(self) -> bool {
        self.0 < 8192
    }
}

open_enum! {
    /// Protocol identifier (RFC 2407 §4.4.1).
    pub struct ProtocolId(pub u8);
    ISAKMP = 1,
    AH = 2,
    ESP = 3,
    IPCOMP = 4,
}

open_enum! {
    /// Identification type (RFC 2407 §4.6.2.1).
    pub struct IdType(pub u8);
    IPV4_ADDR = 1,
    FQDN = 2,
    USER_FQDN = 3,
    IPV4_ADDR_SUBNET = 4,
    IPV6_ADDR = 5,
    IPV6_ADDR_SUBNET = 6,
    IPV4_ADDR_RANGE = 7,
    IPV6_ADDR_RANGE = 8,
    DER_ASN1_DN = 9,
    DER_ASN1_GN = 10,
    KEY_ID = 11,
}

/// IPsec DOI (RFC 2407 §4.2).
pub const DOI_IPSEC: u32 = 1;
/// The only situation supported: SIT_IDENTITY_ONLY (RFC 2407 §4.2.1).
pub const SIT_IDENTITY_ONLY: u32 = 1;
/// Certificate encoding "X.509 Certificate - Signature" (RFC 2408 §3.9).
pub const CERT_X509_SIG: u8 = 4;

/// Phase 1 (IKE SA) attribute classes, RFC 2409 appendix A, and their values.
pub mod attr {
    pub const ENCRYPTION_ALGORITHM: u16 = 1;
    pub const HASH_ALGORITHM: u16 = 2;
    pub const AUTHENTICATION_METHOD: u16 = 3;
    pub const GROUP_DESCRIPTION: u16 = 4;
    pub const GROUP_TYPE: u16 = 5;
    pub const GROUP_PRIME: u16 = 6;
    pub const GROUP_GENERATOR_ONE: u16 = 7;
    pub const GROUP_GENERATOR_TWO: u16 = 8;
    pub const GROUP_CURVE_A: u16 = 9;
    pub const GROUP_CURVE_B: u16 = 10;
    pub const LIFE_TYPE: u16 = 11;
    pub const LIFE_DURATION: u16 = 12;
    pub const PRF: u16 = 13;
    pub const KEY_LENGTH: u16 = 14;
    pub const FIELD_SIZE: u16 = 15;
    pub const GROUP_ORDER: u16 = 16;

    // Life types (class 11).
    pub const SECONDS: u16 = 1;
    pub const KILOBYTES: u16 = 2;

    // Authentication methods (class 3): RFC 2409, RFC 4754, XAuth and
    // hybrid drafts (private-use values as used by Cisco/strongSwan).
    pub const PSK: u16 = 1;
    pub const DSS: u16 = 2;
    pub const RSA_SIG: u16 = 3;
    pub const RSA_ENC: u16 = 4;
    pub const RSA_REV_ENC: u16 = 5;
    pub const ECDSA_256: u16 = 9;
    pub const ECDSA_384: u16 = 10;
    pub const ECDSA_521: u16 = 11;
    pub const HYBRID_INIT_RSA: u16 = 64221;
    pub const HYBRID_RESP_RSA: u16 = 64222;
    pub const XAUTH_INIT_PSK: u16 = 65001;
    pub const XAUTH_RESP_PSK: u16 = 65002;
    pub const XAUTH_INIT_RSA: u16 = 65005;
    pub const XAUTH_RESP_RSA: u16 = 65006;

    /// The same life types, by themselves.
    pub mod life_type {
        pub use super::{KILOBYTES, SECONDS};
    }

    /// The same authentication methods, by themselves.
    pub mod auth_method {
        pub use super::{
            DSS, ECDSA_256, ECDSA_384, ECDSA_521, HYBRID_INIT_RSA, HYBRID_RESP_RSA, PSK, RSA_ENC,
            RSA_REV_ENC, RSA_SIG, XAUTH_INIT_PSK, XAUTH_INIT_RSA, XAUTH_RESP_PSK, XAUTH_RESP_RSA,
        };
    }
}

/// Phase 2 (IPsec SA) attribute classes, RFC 2407 §4.5, and their values.
pub mod ipsec_attr {
    pub const SA_LIFE_TYPE: u16 = 1;
    pub const SA_LIFE_DURATION: u16 = 2;
    pub const GROUP_DESCRIPTION: u16 = 3;
    pub const ENCAPSULATION_MODE: u16 = 4;
    pub const AUTHENTICATION_ALGORITHM: u16 = 5;
    pub const KEY_LENGTH: u16 = 6;
    pub const KEY_ROUNDS: u16 = 7;
    pub const COMPRESS_DICTIONARY_SIZE: u16 = 8;
    pub const COMPRESS_PRIVATE_ALGORITHM: u16 = 9;

    // Life types (class 1).
    pub const SECONDS: u16 = 1;
    pub const KILOBYTES: u16 = 2;

    // Encapsulation modes (class 4): RFC 2407, RFC 3947, and the NAT-T drafts.
    pub const TUNNEL: u16 = 1;
    pub const TRANSPORT: u16 = 2;
    pub const UDP_TUNNEL_RFC: u16 = 3;
    pub const UDP_TRANSPORT_RFC: u16 = 4;
    pub const UDP_TUNNEL_DRAFT: u16 = 61443;
    pub const UDP_TRANSPORT_DRAFT: u16 = 61444;

    /// The same life types, by themselves.
    pub mod life_type {
        pub use super::{KILOBYTES, SECONDS};
    }

    /// The same encapsulation modes, by themselves.
    pub mod encapsulation {
        pub use super::{
            TRANSPORT, TUNNEL, UDP_TRANSPORT_DRAFT, UDP_TRANSPORT_RFC, UDP_TUNNEL_DRAFT,
            UDP_TUNNEL_RFC,
        };
    }
}

/// Mode Config (draft-dukes-ike-mode-cfg), XAuth (draft-beaulieu-ike-xauth)
/// and Cisco Unity attribute types, and the cfg message types.
pub mod cfg_attr {
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    pub const INTERNAL_IP4_NETMASK: u16 = 2;
    pub const INTERNAL_IP4_DNS: u16 = 3;
    pub const INTERNAL_IP4_NBNS: u16 = 4;
    pub const INTERNAL_ADDRESS_EXPIRY: u16 = 5;
    pub const INTERNAL_IP4_DHCP: u16 = 6;
    pub const APPLICATION_VERSION: u16 = 7;
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    pub const INTERNAL_IP6_NETMASK: u16 = 9;
    pub const INTERNAL_IP6_DNS: u16 = 10;
    pub const INTERNAL_IP6_NBNS: u16 = 11;
    pub const INTERNAL_IP6_DHCP: u16 = 12;
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    pub const SUPPORTED_ATTRIBUTES: u16 = 14;
    pub const INTERNAL_IP6_SUBNET: u16 = 15;

    pub const XAUTH_TYPE: u16 = 16520;
    pub const XAUTH_USER_NAME: u16 = 16521;
    pub const XAUTH_USER_PASSWORD: u16 = 16522;
    pub const XAUTH_PASSCODE: u16 = 16523;
    pub const XAUTH_MESSAGE: u16 = 16524;
    pub const XAUTH_CHALLENGE: u16 = 16525;
    pub const XAUTH_DOMAIN: u16 = 16526;
    pub const XAUTH_STATUS: u16 = 16527;
    pub const XAUTH_NEXT_PIN: u16 = 16528;
    pub const XAUTH_ANSWER: u16 = 16529;

    pub const UNITY_BANNER: u16 = 28672;
    pub const UNITY_SAVE_PASSWD: u16 = 28673;
    pub const UNITY_DEF_DOMAIN: u16 = 28674;
    pub const UNITY_SPLITDNS_NAME: u16 = 28675;
    pub const UNITY_SPLIT_INCLUDE: u16 = 28676;
    pub const UNITY_NATT_PORT: u16 = 28677;
    pub const UNITY_LOCAL_LAN: u16 = 28678;
    pub const UNITY_PFS: u16 = 28679;
    pub const UNITY_FW_TYPE: u16 = 28680;
    pub const UNITY_BACKUP_SERVERS: u16 = 28681;
    pub const UNITY_DDNS_HOSTNAME: u16 = 28682;

    // Cfg message types (ATTRIBUTE payload "Type" field).
    pub const REQUEST: u8 = 1;
    pub const REPLY: u8 = 2;
    pub const SET: u8 = 3;
    pub const ACK: u8 = 4;

    // XAUTH_TYPE values (draft-beaulieu-ike-xauth §6.2).
    pub const XAUTH_TYPE_GENERIC: u16 = 0;
    pub const XAUTH_TYPE_RADIUS_CHAP: u16 = 1;
    pub const XAUTH_TYPE_OTP: u16 = 2;
    pub const XAUTH_TYPE_SKEY: u16 = 3;

    // XAUTH_STATUS values.
    pub const XAUTH_STATUS_FAIL: u16 = 0;
    pub const XAUTH_STATUS_OK: u16 = 1;
}
