//! The Go checksum database (`sum.golang.org` and databases like it), as the go command
//! reads it: signed notes ([`note`]) and the tamper-evident log of go.sum records, read out
//! of tiles verified against a signed tree head ([`tlog`]).

pub mod note;
pub mod tlog;

use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 as Go's `encoding/base64.StdEncoding` reads it: padded, and lenient about
/// non-zero bits after the last character (Go accepts them; a stricter reader would refuse
/// notes and hashes the go command takes).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);
