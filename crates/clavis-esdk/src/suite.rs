//! The two algorithm suites: both AES-256-GCM with HKDF-SHA512 key derivation and key
//! commitment, one of them signed with ECDSA P-384.

/// An algorithm suite of message format version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// 0x0478: AES-256-GCM, HKDF-SHA512, key commitment, no signature.
    Committing,
    /// 0x0578: as [`Suite::Committing`] with an ECDSA P-384 signature over the message.
    CommittingSigned,
}

impl Suite {
    /// The two-byte identifier in the header.
    pub fn id(self) -> u16 {
        match self {
            Suite::Committing => 0x0478,
            Suite::CommittingSigned => 0x0578,
        }
    }

    /// The suite with identifier `id`, if supported.
    pub fn from_id(id: u16) -> Option<Suite> {
        match id {
            0x0478 => Some(Suite::Committing),
            0x0578 => Some(Suite::CommittingSigned),
            _ => None,
        }
    }

    /// The name `aws-encryption-cli --algorithm` uses.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Committing => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
            Suite::CommittingSigned => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
        }
    }

    /// The suite called `name` (see [`Suite::name`]).
    pub fn from_name(name: &str) -> Option<Suite> {
        [Suite::Committing, Suite::CommittingSigned].into_iter().find(|s| s.name() == name)
    }

    /// True for the suite with a signature footer.
    pub fn is_signed(self) -> bool {
        matches!(self, Suite::CommittingSigned)
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for s in [Suite::Committing, Suite::CommittingSigned] {
            assert_eq!(Suite::from_id(s.id()), Some(s));
            assert_eq!(Suite::from_name(s.name()), Some(s));
        }
        assert_eq!(Suite::from_id(0x0378), None);
        assert_eq!(Suite::from_name("AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384"), None);
        assert!(Suite::CommittingSigned.is_signed() && !Suite::Committing.is_signed());
    }
}
