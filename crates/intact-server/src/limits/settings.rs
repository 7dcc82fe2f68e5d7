//! `[limits]`: how much one request, one transaction and one client may ask of the server.
//! Every key is optional; the defaults protect a small server out of the box
//! (docs/configuration.md lists them, docs/security.md says what each answers).

use serde::{Deserialize, Serialize};

use crate::config::ByteSize;

/// `[limits]` as written in the configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSettings {
    /// A JSON or metadata body, or one text field of a multipart publish.
    pub max_body_bytes: ByteSize,
    /// One uploaded file (a PUT body, a publish's file part, a Go module zip); 0: no limit of
    /// intact's own (a Go module zip is still at most 500 MiB, the go command's rule).
    pub max_file_bytes: ByteSize,
    /// A transaction's or version's metadata, serialized as JSON.
    pub max_metadata_bytes: ByteSize,
    /// Distinct file paths one transaction may stage; 0: no limit.
    pub max_files_per_transaction: u64,
    /// All request header names and values together.
    pub max_header_bytes: ByteSize,
    /// Requests per client address (IPv6: per /64 network).
    pub rate_per_address: RateSettings,
    /// Requests per API token (an authenticated request counts against its token only).
    pub rate_per_token: RateSettings,
    /// Whether loopback clients (127.0.0.0/8, ::1) skip the per-address rate. Off by default:
    /// behind a reverse proxy on the same machine every client would look like loopback.
    pub rate_exempt_loopback: bool,
    /// Uploads (file PUTs, publishes, Go publishes) streaming at once, over all clients.
    pub max_concurrent_uploads: u32,
    /// Transactions one API token may hold open at once (each holds a soft lock and staged
    /// blobs until committed, aborted or expired); 0: no limit.
    pub max_open_transactions_per_token: u64,
}

/// A token bucket: `per_second` requests a second on average, up to `burst` at once.
/// `per_second = 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateSettings {
    pub per_second: u32,
    pub burst: u32,
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 2 << 20;
pub const DEFAULT_MAX_METADATA_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_FILES_PER_TRANSACTION: u64 = 100_000;
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: u32 = 64;
/// A build farm publishing in parallel holds one per job; a leak of thousands is a bug.
pub const DEFAULT_MAX_OPEN_TRANSACTIONS_PER_TOKEN: u64 = 1000;
/// Well above what one busy client does (a CI machine publishing thousands of small files
/// runs at a few hundred requests a second, each one a catalog write), far below what it
/// takes to swamp a server: the rate is for runaway and abusive clients, not for shaping
/// the busy ones. 200 a second broke bulk publishing from one machine.
pub const DEFAULT_RATE_PER_ADDRESS: RateSettings = RateSettings {
    per_second: 1000,
    burst: 2000,
};
/// A token often stands for a whole build farm: more than one address's share.
pub const DEFAULT_RATE_PER_TOKEN: RateSettings = RateSettings {
    per_second: 2000,
    burst: 4000,
};

/// Every connection buffers this much and more (`listener::connection_buffer`), reading and
/// writing: a larger setting would let any client make every connection that large.
const MAX_HEADER_BYTES_CEILING: u64 = 256 << 10;

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: ByteSize::Bytes(DEFAULT_MAX_BODY_BYTES),
            max_file_bytes: ByteSize::Bytes(0),
            max_metadata_bytes: ByteSize::Bytes(DEFAULT_MAX_METADATA_BYTES),
            max_files_per_transaction: DEFAULT_MAX_FILES_PER_TRANSACTION,
            max_header_bytes: ByteSize::Bytes(DEFAULT_MAX_HEADER_BYTES),
            rate_per_address: DEFAULT_RATE_PER_ADDRESS,
            rate_per_token: DEFAULT_RATE_PER_TOKEN,
            rate_exempt_loopback: false,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            max_open_transactions_per_token: DEFAULT_MAX_OPEN_TRANSACTIONS_PER_TOKEN,
        }
    }
}

/// `[limits]` checked and resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLimits {
    pub max_body_bytes: u64,
    pub max_file_bytes: Option<u64>,
    pub max_metadata_bytes: u64,
    pub max_files_per_transaction: Option<u64>,
    pub max_header_bytes: usize,
    pub rate_per_address: Option<RateSettings>,
    pub rate_per_token: Option<RateSettings>,
    pub rate_exempt_loopback: bool,
    pub max_concurrent_uploads: u32,
    pub max_open_transactions_per_token: Option<u64>,
}

impl LimitsSettings {
    /// Checks every key; a bad one fails start-up with a message naming it.
    pub fn resolve(&self) -> anyhow::Result<ResolvedLimits> {
        let size = |key: &str, v: &ByteSize| v.bytes().map_err(|e| anyhow::anyhow!("limits.{key}: {e}"));
        let at_least_one = |key: &str, v: u64| {
            if v == 0 {
                anyhow::bail!("limits.{key} must be at least 1");
            }
            Ok(v)
        };
        let max_body_bytes = at_least_one("max_body_bytes", size("max_body_bytes", &self.max_body_bytes)?)?;
        let max_metadata_bytes = at_least_one(
            "max_metadata_bytes",
            size("max_metadata_bytes", &self.max_metadata_bytes)?,
        )?;
        let max_header_bytes = at_least_one("max_header_bytes", size("max_header_bytes", &self.max_header_bytes)?)?;
        if max_header_bytes > MAX_HEADER_BYTES_CEILING {
            anyhow::bail!(
                "limits.max_header_bytes = {max_header_bytes}: at most {MAX_HEADER_BYTES_CEILING} (every connection buffers a head this large)"
            );
        }
        let max_concurrent_uploads = at_least_one("max_concurrent_uploads", u64::from(self.max_concurrent_uploads))?;
        Ok(ResolvedLimits {
            max_body_bytes,
            max_file_bytes: Some(size("max_file_bytes", &self.max_file_bytes)?).filter(|&n| n > 0),
            max_metadata_bytes,
            max_files_per_transaction: Some(self.max_files_per_transaction).filter(|&n| n > 0),
            max_header_bytes: usize::try_from(max_header_bytes)?,
            rate_per_address: rate("rate_per_address", self.rate_per_address)?,
            rate_per_token: rate("rate_per_token", self.rate_per_token)?,
            rate_exempt_loopback: self.rate_exempt_loopback,
            max_concurrent_uploads: u32::try_from(max_concurrent_uploads)?,
            max_open_transactions_per_token: Some(self.max_open_transactions_per_token).filter(|&n| n > 0),
        })
    }
}

fn rate(key: &str, r: RateSettings) -> anyhow::Result<Option<RateSettings>> {
    if r.per_second == 0 {
        return Ok(None);
    }
    if r.burst < r.per_second {
        anyhow::bail!(
            "limits.{key}: burst ({}) must be at least per_second ({}); per_second = 0 turns the limit off",
            r.burst,
            r.per_second
        );
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ResolvedLimits> {
        toml::from_str::<LimitsSettings>(text)?.resolve()
    }

    #[test]
    fn defaults_protect_a_small_server() {
        let d = parse("").expect("defaults");
        assert_eq!(d.max_body_bytes, 2 << 20);
        assert_eq!(d.max_file_bytes, None);
        assert_eq!(d.max_metadata_bytes, 64 << 10);
        assert_eq!(d.max_files_per_transaction, Some(100_000));
        assert_eq!(d.max_header_bytes, 64 << 10);
        assert_eq!(d.rate_per_address, Some(DEFAULT_RATE_PER_ADDRESS));
        assert_eq!(d.rate_per_token, Some(DEFAULT_RATE_PER_TOKEN));
        assert!(!d.rate_exempt_loopback);
        assert_eq!(d.max_concurrent_uploads, 64);
    }

    /// The `[limits]` block of docs/configuration.md spells out the defaults.
    #[test]
    fn the_documented_block_is_the_defaults() {
        let doc = include_str!("../../../../docs/configuration.md");
        let start = doc.find("[limits]").expect("a [limits] block in the docs");
        let block: String = doc[start..]
            .lines()
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            parse(&block).expect("the documented block parses"),
            parse("").expect("defaults")
        );
    }

    #[test]
    fn sizes_take_units_and_zero_turns_optional_limits_off() {
        let l = parse(
            r#"
max_body_bytes = "1MiB"
max_file_bytes = "10GB"
max_files_per_transaction = 0
rate_per_address = { per_second = 0, burst = 0 }
"#,
        )
        .expect("limits");
        assert_eq!(l.max_body_bytes, 1 << 20);
        assert_eq!(l.max_file_bytes, Some(10_000_000_000));
        assert_eq!(l.max_files_per_transaction, None);
        assert_eq!(l.rate_per_address, None);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("max_body_bytes = 0", "limits.max_body_bytes"),
            ("max_metadata_bytes = \"lots\"", "limits.max_metadata_bytes"),
            ("max_header_bytes = \"1GiB\"", "limits.max_header_bytes"),
            ("max_concurrent_uploads = 0", "limits.max_concurrent_uploads"),
            (
                "rate_per_token = { per_second = 10, burst = 5 }",
                "limits.rate_per_token",
            ),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(toml::from_str::<LimitsSettings>("max_everything = 1").is_err());
    }
}
