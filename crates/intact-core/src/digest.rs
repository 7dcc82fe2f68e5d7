//! SHA-256 content digests: the only thing a blob is ever addressed by.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::ValidationError;

/// A SHA-256 digest. Displays and serializes as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex characters (either case).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(ValidationError::new("sha256", s, "64 hexadecimal characters"));
        }
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        self.hex().as_str().to_owned()
    }

    /// The 64 hex characters, without allocating (every served file names its digest in
    /// two headers).
    pub fn hex(&self) -> HexDigest {
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        HexDigest(out)
    }

    /// Digest of an in-memory byte slice (small payloads only; bodies are hashed streaming).
    pub fn of(bytes: &[u8]) -> Self {
        let mut h = DigestHasher::new();
        h.update(bytes);
        h.finish()
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A digest's 64 lower-case hex characters, on the stack.
#[derive(Clone, Copy)]
pub struct HexDigest([u8; 64]);

impl HexDigest {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex().as_str())
    }
}

impl std::str::FromStr for Digest {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256, fed as bytes stream past.
#[derive(Clone, Default)]
pub struct DigestHasher {
    inner: sha2::Sha256,
    len: u64,
}

impl DigestHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(self.inner.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            Digest::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_matches_the_hex_crate() {
        for content in [&b""[..], b"abc", b"\x00\xff\x10"] {
            let d = Digest::of(content);
            assert_eq!(d.hex().as_str(), hex::encode(d.as_bytes()));
            assert_eq!(d.to_string(), hex::encode(d.as_bytes()));
        }
    }

    #[test]
    fn parse_round_trip_and_reject() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(&d.to_hex()).ok(), Some(d));
        assert_eq!(Digest::parse(&d.to_hex().to_uppercase()).ok(), Some(d));
        assert!(Digest::parse("abc").is_err());
        assert!(Digest::parse(&"g".repeat(64)).is_err());
    }
}
