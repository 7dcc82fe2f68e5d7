//! Who sent a request, as request extensions that the layers under the routes fill in.

use std::net::IpAddr;
use std::sync::Arc;

/// The client's address: the TCP peer, or the address a trusted reverse proxy forwarded in
/// `X-Forwarded-For` when the peer is one of the configured trusted proxies. The listener
/// inserts it into every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Who the request authenticated as. The authentication layer inserts it into every request
/// it lets through; anonymous requests carry `token: None`.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The name of the token the request presented (`intact token list` shows it).
    pub token: Option<Arc<str>>,
    /// The token itself, with its scopes.
    pub record: Option<Arc<intact_store::tokens::TokenRecord>>,
    /// Whether access control is on (some token exists, or `[auth] required`); while it is
    /// off, every caller may do everything.
    pub enforced: bool,
}

impl Caller {
    pub fn token_name(&self) -> Option<&str> {
        self.token.as_deref()
    }
}
