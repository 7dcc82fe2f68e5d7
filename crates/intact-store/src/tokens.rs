//! API tokens: named secrets with scopes per repository, kept in the catalog (so every replica
//! of a shared catalog sees the same tokens, and a token made on the server's host with no
//! server running is seen by the server at its next request).
//!
//! Only the sha256 of a secret is stored. Secrets are 256 random bits, so a fast hash is
//! enough: nothing can be guessed from it, and a lookup is one indexed read. A token is never
//! deleted: revoking marks it, so `intact token list` keeps the history and a name is never
//! silently reused.

use std::fmt;
use std::str::FromStr;

use intact_core::{Digest, RepoName, Timestamp, ValidationError};
use serde::{Deserialize, Serialize};

/// What a scope lets its holder do in a repository. Each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read versions, files, listings; fetch through a proxy repo; stage artifacts.
    Read,
    /// Open, fill, commit and abort transactions; publish.
    Publish,
    /// On `*`: the server's admin operations (gc, verify, tokens).
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Publish => "publish",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which repositories a scope covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepoPattern {
    /// `*`: every repository, including ones configured later.
    Any,
    Repo(RepoName),
}

impl RepoPattern {
    pub fn covers(&self, repo: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Repo(r) => r.as_str() == repo,
        }
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Repo(r) => f.write_str(r.as_str()),
        }
    }
}

/// `REPO:ACCESS`, e.g. `releases:publish` or `*:read`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub repo: RepoPattern,
    pub access: Access,
}

impl Scope {
    /// Whether this scope allows `access` in `repo`.
    pub fn allows(&self, repo: &str, access: Access) -> bool {
        self.access >= access && self.repo.covers(repo)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.access)
    }
}

fn bad_scope(value: &str, why: &str) -> ValidationError {
    ValidationError::new(
        "scope",
        value,
        format!(
            "{why}: a scope is REPO:ACCESS, where REPO is a repository name or `*` and ACCESS is read, publish or admin (e.g. releases:publish, *:read)"
        ),
    )
}

impl FromStr for Scope {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((repo, access)) = s.rsplit_once(':') else {
            return Err(bad_scope(s, "no `:`"));
        };
        let access = match access {
            "read" => Access::Read,
            "publish" => Access::Publish,
            "admin" => Access::Admin,
            _ => return Err(bad_scope(s, "unknown access")),
        };
        let repo = match repo {
            "*" => RepoPattern::Any,
            r => RepoPattern::Repo(RepoName::parse(r).map_err(|e| bad_scope(s, &e.rule))?),
        };
        Ok(Self { repo, access })
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "`REPO:ACCESS`: a repo name or `*`, and `read`, `publish` or `admin`.",
            ))
            .build()
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A token's name: what lists, logs and `revoke` use (the secret is never shown again).
pub fn validate_token_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            name,
            "a token name is 1-64 characters: letters, digits, `-`, `_`, `.`, `@`, starting with a letter or digit",
        ))
    }
}

/// The prefix of every secret, so a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "intact_";

/// A fresh secret: the prefix and 256 random bits in hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::with_capacity(SECRET_PREFIX.len() + 64);
    s.push_str(SECRET_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What the catalog stores in place of a secret.
pub fn secret_hash(secret: &str) -> String {
    Digest::of(secret.as_bytes()).to_hex()
}

/// A token to create.
#[derive(Clone)]
pub struct NewToken {
    pub name: String,
    pub secret_sha256: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<Timestamp>,
}

/// A token as the catalog keeps it (never the secret).
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    pub name: String,
    /// What the catalog keeps of the secret (never shown; `intact migrate` copies it, so a
    /// token keeps working against the new catalog).
    #[serde(skip)]
    pub secret_sha256: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

// Written by hand so that no debug line or log ever carries a secret's hash.
impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// Whether the token's scopes allow `access` in `repo`.
    pub fn allows(&self, repo: &str, access: Access) -> bool {
        self.scopes.iter().any(|s| s.allows(repo, access))
    }

    /// Why the token cannot be used at `now`, if it cannot.
    pub fn unusable(&self, now: Timestamp) -> Option<String> {
        if let Some(at) = self.revoked_at {
            return Some(format!("token {} was revoked at {at}", self.name));
        }
        match self.expires_at {
            Some(at) if at <= now => Some(format!("token {} expired at {at}", self.name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_order() {
        let s: Scope = "releases:publish".parse().expect("scope");
        assert!(s.allows("releases", Access::Read));
        assert!(s.allows("releases", Access::Publish));
        assert!(!s.allows("releases", Access::Admin));
        assert!(!s.allows("other", Access::Read));
        let any: Scope = "*:read".parse().expect("scope");
        assert!(any.allows("anything", Access::Read));
        assert!(!any.allows("anything", Access::Publish));
        assert_eq!(any.to_string(), "*:read");
        for bad in ["releases", "releases:write", ":read", "Bad Repo:read", "*:"] {
            let e = bad.parse::<Scope>().expect_err(bad);
            assert_eq!(e.field, "scope", "{bad}");
        }
    }

    #[test]
    fn names_and_secrets() {
        validate_token_name("ci-bot@farm.1").expect("valid");
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(65)] {
            validate_token_name(bad).expect_err(bad);
        }
        let a = new_secret();
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 64);
        assert_ne!(a, new_secret());
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_ne!(secret_hash(&a), secret_hash(&new_secret()));
    }
}

/// Makes token `name` with `scopes`, expiring at `expires_at` if given. Returns it with its
/// secret, which exists nowhere else: show it once.
pub async fn create(
    catalog: &dyn crate::Catalog,
    name: &str,
    scopes: Vec<Scope>,
    expires_at: Option<Timestamp>,
) -> crate::Result<(TokenRecord, String)> {
    validate_token_name(name)?;
    if scopes.is_empty() {
        return Err(crate::Error::BadRequest {
            field: "scopes",
            message: "a token needs at least one scope (REPO:ACCESS, e.g. releases:publish or *:admin)".into(),
        });
    }
    let secret = new_secret();
    let record = catalog
        .create_token(&NewToken {
            name: name.to_owned(),
            secret_sha256: secret_hash(&secret),
            scopes,
            expires_at,
        })
        .await?;
    Ok((record, secret))
}

/// How many tokens exist and how many are revoked ([`crate::Catalog::token_census`]): it
/// changes with every create, import and revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCensus {
    pub tokens: u64,
    pub revoked: u64,
}

/// How often a server reads the token census to learn that a token was made or revoked
/// elsewhere (another replica, or `intact token` on the host).
pub const CENSUS_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A server believes what it remembers of a token only while its last census read began less
/// than this long ago; past that (the catalog slow or down) every request asks the catalog.
pub const REMEMBERED_FOR: std::time::Duration = std::time::Duration::from_millis(350);

/// How long a revocation waits before it answers, so that by then no server anywhere still
/// believes the token: longer than [`REMEMBERED_FOR`]. What makes "revoked" mean "refused
/// from the next request on", everywhere, without a catalog round trip per request.
pub const REVOCATION_SETTLES: std::time::Duration = std::time::Duration::from_millis(500);

/// The outcome of presenting a secret.
#[derive(Debug)]
pub enum Presented<T = TokenRecord> {
    /// A live token.
    Valid(T),
    /// A token that exists but cannot be used (revoked or expired): the reason.
    Unusable(String),
    /// No token has this secret.
    Unknown,
}

/// Looks up the token a presented secret belongs to, judged at `now`.
pub async fn authenticate(catalog: &dyn crate::Catalog, secret: &str, now: Timestamp) -> crate::Result<Presented> {
    authenticate_hash(catalog, &secret_hash(secret), now).await
}

/// [`authenticate`], given the secret's hash.
pub async fn authenticate_hash(
    catalog: &dyn crate::Catalog,
    secret_sha256: &str,
    now: Timestamp,
) -> crate::Result<Presented> {
    Ok(match catalog.token_by_secret_hash(secret_sha256).await? {
        None => Presented::Unknown,
        Some(t) => match t.unusable(now) {
            Some(why) => Presented::Unusable(why),
            None => Presented::Valid(t),
        },
    })
}

/// Whether token administration may create the embedded catalog it is pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingCatalog {
    /// Refuse: the data dir was typed on the command line, and a typo would take the token
    /// (or show a sweeper that never ran) while the server goes on reading its own.
    Refuse,
    /// Create it: the data dir comes from the server's own configuration file, so the server
    /// will open this very catalog (the first admin token made before the first start).
    Create,
}

/// Opens the catalog `choice` names for token administration, without taking the data dir
/// (the server may be running on it: SQLite serialises the two processes' writes, and the
/// server notices token changes through the catalog's token census).
pub async fn open_catalog(
    data_dir: &std::path::Path,
    choice: &crate::CatalogChoice,
    missing: MissingCatalog,
) -> crate::Result<std::sync::Arc<dyn crate::Catalog>> {
    match choice {
        crate::CatalogChoice::Embedded => {
            let path = data_dir.join("catalog.db");
            if !path.is_file() {
                if missing == MissingCatalog::Refuse {
                    return Err(crate::Error::NotFound {
                        what: format!(
                            "an intact catalog at {} (is {} the server's data dir? `intact serve` creates it on its first start; \
                             `--config` with the server's configuration file creates it before that)",
                            path.display(),
                            data_dir.display()
                        ),
                    });
                }
                let dir = data_dir.to_owned();
                tokio::task::spawn_blocking(move || crate::blob::create_dir_all_durable(&dir))
                    .await
                    .map_err(|e| crate::Error::io("creating data dir", std::io::Error::other(e)))?
                    .map_err(|e| crate::Error::io(format!("creating data dir {}", data_dir.display()), e))?;
            }
            let catalog = crate::SqliteCatalog::open(&path, std::sync::Arc::new(crate::SystemClock)).await?;
            Ok(std::sync::Arc::new(catalog))
        }
        crate::CatalogChoice::Postgres { url } => Ok(std::sync::Arc::new(crate::PostgresCatalog::open(url).await?)),
    }
}
