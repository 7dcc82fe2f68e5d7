//! Transaction identities and the state machine every backend enforces:
//! `open -> committed | aborted | expired`, and nothing leaves a final state.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A transaction id: `tx_` followed by 26 lower-case base32 characters (130 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TxnId(String);

impl TxnId {
    const ALPHABET: &'static [u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

    /// Builds an id from 17 random bytes supplied by the caller (this crate does no IO, so it
    /// has no randomness of its own).
    pub fn from_random(bytes: [u8; 17]) -> Self {
        let mut out = String::from("tx_");
        // 26 characters * 5 bits = 130 bits; take them from the 136 we were given.
        let mut acc: u32 = 0;
        let mut nbits = 0;
        let mut produced = 0;
        for b in bytes {
            acc = (acc << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 5 && produced < 26 {
                nbits -= 5;
                let idx = ((acc >> nbits) & 31) as usize;
                out.push(Self::ALPHABET[idx] as char);
                produced += 1;
            }
            acc &= (1 << nbits) - 1;
        }
        Self(out)
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = s.len() == 29 && s.starts_with("tx_") && s[3..].bytes().all(|b| Self::ALPHABET.contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "transaction id",
                s,
                "'tx_' followed by 26 characters of [a-z2-7]",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TxnId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TxnId> for String {
    fn from(id: TxnId) -> String {
        id.0
    }
}

/// Where a transaction is in its life. Only `Open` accepts files or a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TxnState {
    Open,
    Committed,
    /// Rolled back by its owner (`DELETE`).
    Aborted,
    /// Its lease ran out before it committed; it can never commit.
    Expired,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Committed => "committed",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "committed" => Self::Committed,
            "aborted" => Self::Aborted,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        self != Self::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = TxnId::from_random([7; 17]);
        assert_eq!(id.as_str().len(), 29);
        assert_eq!(TxnId::parse(id.as_str()).ok(), Some(id.clone()));
        assert!(TxnId::parse("tx_../../etc").is_err());
        assert!(TxnId::parse("").is_err());
    }

    #[test]
    fn states() {
        for s in [
            TxnState::Open,
            TxnState::Committed,
            TxnState::Aborted,
            TxnState::Expired,
        ] {
            assert_eq!(TxnState::parse(s.as_str()), Some(s));
        }
        assert!(!TxnState::Open.is_final());
    }
}
