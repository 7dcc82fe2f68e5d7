//! Signed notes (`golang.org/x/mod/sumdb/note`'s format): a text, a blank line, and
//! signature lines `— NAME BASE64(KEYHASH[4] || SIGNATURE)`. A checksum database signs its
//! tree heads this way; its verifier key is written `NAME+HASH+BASE64(0x01 || ED25519 KEY)`,
//! HASH being the first four bytes of SHA-256(NAME "\n" 0x01 KEY) in hex.

use base64::Engine;
use ring::signature::{ED25519, UnparsedPublicKey};

use super::BASE64 as STANDARD;
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 1;
/// More signature lines than this and the note is refused, as the go command does.
const MAX_SIGNATURES: usize = 100;

/// Why a key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed verifier key {0:?} (want NAME+HASH+KEY, as in GOSUMDB)")]
    MalformedKey(String),
    #[error("verifier key {0:?}: its hash does not match its name and key")]
    KeyHash(String),
    #[error("verifier key {0:?}: unknown algorithm (only Ed25519 is used)")]
    KeyAlgorithm(String),
    #[error("malformed note")]
    Malformed,
    #[error("the note is not signed by {0}")]
    Unsigned(String),
    #[error("invalid signature by {0}")]
    BadSignature(String),
}

/// A checksum database's public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    hash: u32,
    key: [u8; 32],
    text: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn key_hash(name: &str, key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(key);
    let sum = h.finalize();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

impl Verifier {
    /// Parses `NAME+HASH+KEY`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let malformed = || NoteError::MalformedKey(text.chars().take(200).collect());
        let (name, rest) = text.split_once('+').ok_or_else(malformed)?;
        let (hash16, key64) = rest.split_once('+').ok_or_else(malformed)?;
        if hash16.len() != 8 || !is_valid_name(name) {
            return Err(malformed());
        }
        let hash = u32::from_str_radix(hash16, 16).map_err(|_| malformed())?;
        let key = STANDARD.decode(key64).map_err(|_| malformed())?;
        if key.is_empty() {
            return Err(malformed());
        }
        if key_hash(name, &key) != hash {
            return Err(NoteError::KeyHash(text.to_owned()));
        }
        if key[0] != ALG_ED25519 {
            return Err(NoteError::KeyAlgorithm(text.to_owned()));
        }
        let key: [u8; 32] = key[1..].try_into().map_err(|_| malformed())?;
        Ok(Self {
            name: name.to_owned(),
            hash,
            key,
            text: text.to_owned(),
        })
    }

    /// The database's name (`sum.golang.org`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks that `msg` is a note signed by this key; returns its text (up to and including
    /// the newline before the blank line). Signatures by other keys are ignored, as long as
    /// they are well-formed.
    pub fn open<'a>(&self, msg: &'a [u8]) -> Result<&'a str, NoteError> {
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed)?;
        if msg.chars().any(|c| c < '\u{20}' && c != '\n') {
            return Err(NoteError::Malformed);
        }
        let split = msg.rfind("\n\n").ok_or(NoteError::Malformed)?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed);
        }
        let mut verified = false;
        for (count, line) in sigs.lines().enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(NoteError::Malformed);
            }
            let line = line.strip_prefix("— ").ok_or(NoteError::Malformed)?;
            let (name, b64) = line.split_once(' ').ok_or(NoteError::Malformed)?;
            let sig = STANDARD.decode(b64).map_err(|_| NoteError::Malformed)?;
            if !is_valid_name(name) || sig.len() < 5 {
                return Err(NoteError::Malformed);
            }
            let hash = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
            if name != self.name || hash != self.hash {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.key)
                .verify(text.as_bytes(), &sig[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::Unsigned(self.name.clone()));
        }
        Ok(text)
    }
}
