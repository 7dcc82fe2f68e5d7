//! Request rates: a token bucket (GCRA, the `governor` crate) per API token for
//! authenticated requests, and per client address for the rest. Over the rate: 429 with
//! `Retry-After`.
//!
//! **Ordering:** [`refusal`] must run *after* authentication, which inserts the [`Caller`]
//! extension it keys by: an authenticated client is counted against its token (many CI
//! machines behind one NAT do not share a budget), an anonymous one against its address.
//! `api::front_door` runs the guard, authentication, then this.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::{Extensions, StatusCode};
use axum::response::Response;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::refusal::LimitRefusal;
use super::{Limits, RateSettings, ResolvedLimits};
use crate::http::{Caller, ClientAddr};

/// Whom a request is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    /// An authenticated request: its token's name.
    Token(Arc<str>),
    /// An anonymous request from this address; IPv6 addresses are taken by their /64
    /// network, which one client usually holds whole (counting each address would let it
    /// start 2^64 fresh buckets).
    Address(IpAddr),
    /// No `ClientAddr` extension (a listener that does not set it): every such request
    /// shares one bucket.
    UnknownAddress,
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(name) => write!(f, "token {name}"),
            Self::Address(IpAddr::V6(net)) => write!(f, "address {net}/64"),
            Self::Address(ip) => write!(f, "address {ip}"),
            Self::UnknownAddress => f.write_str("address unknown"),
        }
    }
}

/// The key of a request: its token when authenticated, else its client address.
pub(crate) fn rate_key(extensions: &Extensions) -> RateKey {
    if let Some(token) = extensions.get::<Caller>().and_then(|c| c.token.clone()) {
        return RateKey::Token(token);
    }
    match extensions.get::<ClientAddr>() {
        Some(ClientAddr(IpAddr::V6(v6))) => match v6.to_ipv4_mapped() {
            Some(v4) => RateKey::Address(IpAddr::V4(v4)),
            None => RateKey::Address(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX)))),
        },
        Some(ClientAddr(v4)) => RateKey::Address(*v4),
        None => RateKey::UnknownAddress,
    }
}

/// One keyed bucket set with the rate it enforces.
struct KeyedRate {
    limiter: DefaultKeyedRateLimiter<RateKey>,
    settings: RateSettings,
    /// The configuration key, named in refusals.
    config_key: &'static str,
}

impl KeyedRate {
    fn new(settings: Option<RateSettings>, config_key: &'static str) -> Option<Self> {
        let settings = settings?;
        let per_second = NonZeroU32::new(settings.per_second)?;
        let burst = NonZeroU32::new(settings.burst).unwrap_or(per_second);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            settings,
            config_key,
        })
    }
}

/// A refused request: which limit, and when to come back.
#[derive(Debug)]
pub(crate) struct RateLimited {
    pub config_key: &'static str,
    pub settings: RateSettings,
    /// Whole seconds, at least 1 (what `Retry-After` can say).
    pub retry_after_seconds: u64,
}

/// How many checks between two sweeps of buckets that are full again (indistinguishable
/// from a new key, so forgetting them changes nothing): memory follows the keys active in
/// the last `burst / per_second` seconds, not every key ever seen.
const SWEEP_EVERY: u64 = 1024;

pub(crate) struct RateLimiters {
    per_address: Option<KeyedRate>,
    per_token: Option<KeyedRate>,
    /// Lookups of tokens this process does not remember, per address, at the address's
    /// rate but in buckets of their own: clients behind one address (a NAT, a proxy not
    /// listed as trusted) whose tokens were all forgotten at once (a token change anywhere
    /// makes every server forget) must not spend the budget of that address's anonymous
    /// requests, yet a flood of made-up tokens must still meet a limit before the catalog.
    token_lookups: Option<KeyedRate>,
    exempt_loopback: bool,
    checks: AtomicU64,
}

impl RateLimiters {
    pub(crate) fn new(settings: &ResolvedLimits) -> Self {
        Self {
            per_address: KeyedRate::new(settings.rate_per_address, "limits.rate_per_address"),
            per_token: KeyedRate::new(settings.rate_per_token, "limits.rate_per_token"),
            token_lookups: KeyedRate::new(settings.rate_per_address, "limits.rate_per_address"),
            exempt_loopback: settings.rate_exempt_loopback,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request against `key`.
    pub(crate) fn check(&self, key: &RateKey) -> Result<(), RateLimited> {
        let rate = match key {
            RateKey::Token(_) => &self.per_token,
            RateKey::Address(ip) if self.exempt_loopback && ip.is_loopback() => return Ok(()),
            RateKey::Address(_) | RateKey::UnknownAddress => &self.per_address,
        };
        self.check_in(rate.as_ref(), key)
    }

    /// Counts one lookup of a token not remembered, made by a request from `key`'s address.
    pub(crate) fn check_token_lookup(&self, key: &RateKey) -> Result<(), RateLimited> {
        if let RateKey::Address(ip) = key
            && self.exempt_loopback
            && ip.is_loopback()
        {
            return Ok(());
        }
        self.check_in(self.token_lookups.as_ref(), key)
    }

    fn check_in(&self, rate: Option<&KeyedRate>, key: &RateKey) -> Result<(), RateLimited> {
        // Every check counts towards the next sweep, whichever buckets it used: traffic of
        // one kind alone (made-up tokens from ever new addresses) must not grow them for ever.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let Some(rate) = rate else { return Ok(()) };
        rate.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(rate.limiter.clock().now());
            RateLimited {
                config_key: rate.config_key,
                settings: rate.settings,
                retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    fn sweep(&self) {
        for rate in [&self.per_address, &self.per_token, &self.token_lookups]
            .into_iter()
            .flatten()
        {
            rate.limiter.retain_recent();
            rate.limiter.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn tracked_keys(&self) -> usize {
        [&self.per_address, &self.per_token, &self.token_lookups]
            .into_iter()
            .flatten()
            .map(|r| r.limiter.len())
            .sum()
    }
}

/// Marks a request already counted against its address by authentication (it presented no
/// token this process knows, so it was counted before any catalog work was done for it).
#[derive(Clone, Copy)]
pub(crate) struct AddressCounted;

/// Counts a request against its client address before authentication does any catalog work
/// for it (looking up a token not remembered, or a transaction's repo): otherwise a flood of
/// made-up tokens, every one refused, would reach the catalog unmetered. Marks the request so
/// that the rate layer does not count it again. The refusal, when over the rate.
pub(crate) fn count_address_first(limits: &Limits, req: &mut Request) -> Option<Response> {
    if req.uri().path() == "/healthz" || req.extensions().get::<AddressCounted>().is_some() {
        return None;
    }
    let key = rate_key(req.extensions());
    req.extensions_mut().insert(AddressCounted);
    limits
        .rates
        .check(&key)
        .err()
        .map(|limited| refuse(&key, &limited, req.uri().path()))
}

/// Counts, against its address's token-lookup budget, a request presenting a token this
/// process does not remember, before authentication asks the catalog about it. Not marked as
/// counted: once the token proves valid, the rate layer counts the request against it. The
/// refusal, when over the rate.
pub(crate) fn count_token_lookup(limits: &Limits, req: &Request) -> Option<Response> {
    if req.uri().path() == "/healthz" {
        return None;
    }
    let key = rate_key(req.extensions());
    limits.rates.check_token_lookup(&key).err().map(|limited| {
        tracing::debug!(%key, "token lookups rate limited");
        refusal_response(&format!("token lookups from {key}"), &limited, req.uri().path())
    })
}

/// A refused request (401, 403, 404 from authentication) counted all the same: against
/// `key` (its token when it presented a valid one, else its address), so that refusals are
/// no free way to make the server work. Over the rate, the 429 replaces the refusal.
pub(crate) fn counted_refusal(limits: &Limits, key: &RateKey, path: &str, refusal: Response) -> Response {
    if path == "/healthz" {
        return refusal;
    }
    match limits.rates.check(key) {
        Ok(()) => refusal,
        Err(limited) => refuse(key, &limited, path),
    }
}

/// The rate check of every request, after authentication (see the module doc); the refusal
/// when over the rate. `/healthz` is never counted: a load balancer's probe must not be
/// refused because its address is busy.
pub(crate) fn refusal(limits: &Limits, req: &Request) -> Option<Response> {
    if req.uri().path() == "/healthz" {
        return None;
    }
    let key = rate_key(req.extensions());
    if !matches!(key, RateKey::Token(_)) && req.extensions().get::<AddressCounted>().is_some() {
        return None;
    }
    limits
        .rates
        .check(&key)
        .err()
        .map(|limited| refuse(&key, &limited, req.uri().path()))
}

fn refuse(key: &RateKey, limited: &RateLimited, path: &str) -> Response {
    tracing::debug!(%key, limit = limited.config_key, "rate limited");
    refusal_response(&format!("requests for {key}"), limited, path)
}

fn refusal_response(what: &str, limited: &RateLimited, path: &str) -> Response {
    LimitRefusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        limit: limited.config_key,
        message: format!(
            "too many {what}: at most {} a second, in bursts of at most {} ({}); retry after {}s",
            limited.settings.per_second, limited.settings.burst, limited.config_key, limited.retry_after_seconds
        ),
        retry_after: Some(limited.retry_after_seconds),
    }
    .into_response(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::settings::LimitsSettings;

    fn limiters(address: (u32, u32), token: (u32, u32), exempt_loopback: bool) -> RateLimiters {
        let settings = LimitsSettings {
            rate_per_address: RateSettings {
                per_second: address.0,
                burst: address.1,
            },
            rate_per_token: RateSettings {
                per_second: token.0,
                burst: token.1,
            },
            rate_exempt_loopback: exempt_loopback,
            ..LimitsSettings::default()
        };
        RateLimiters::new(&settings.resolve().expect("limits"))
    }

    fn extensions(caller: Option<Caller>, addr: Option<&str>) -> Extensions {
        let mut e = Extensions::new();
        if let Some(c) = caller {
            e.insert(c);
        }
        if let Some(a) = addr {
            e.insert(ClientAddr(a.parse().expect("ip")));
        }
        e
    }

    fn token(name: &str) -> Caller {
        Caller {
            token: Some(Arc::from(name)),
            ..Caller::default()
        }
    }

    #[test]
    fn the_key_is_the_token_when_authenticated_else_the_address() {
        assert_eq!(
            rate_key(&extensions(Some(token("ci")), Some("192.0.2.7"))),
            RateKey::Token(Arc::from("ci"))
        );
        let anonymous = Caller::default();
        assert_eq!(
            rate_key(&extensions(Some(anonymous), Some("192.0.2.7"))),
            RateKey::Address("192.0.2.7".parse().expect("ip"))
        );
        assert_eq!(
            rate_key(&extensions(None, Some("2001:db8:1:2:aaaa::1"))),
            RateKey::Address("2001:db8:1:2::".parse().expect("ip")),
            "an IPv6 client is counted by its /64"
        );
        assert_eq!(
            rate_key(&extensions(None, Some("::ffff:192.0.2.7"))),
            RateKey::Address("192.0.2.7".parse().expect("ip"))
        );
        assert_eq!(rate_key(&extensions(None, None)), RateKey::UnknownAddress);
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let l = limiters((1, 3), (1, 2), false);
        let a = RateKey::Address("192.0.2.1".parse().expect("ip"));
        let b = RateKey::Address("192.0.2.2".parse().expect("ip"));
        for _ in 0..3 {
            l.check(&a).expect("within the burst");
        }
        let refused = l.check(&a).expect_err("past the burst");
        assert_eq!(refused.config_key, "limits.rate_per_address");
        assert!(refused.retry_after_seconds >= 1);
        l.check(&b).expect("another address is not affected");

        let ci = RateKey::Token(Arc::from("ci"));
        for _ in 0..2 {
            l.check(&ci).expect("a token has its own budget");
        }
        let refused = l.check(&ci).expect_err("past the token's burst");
        assert_eq!(refused.config_key, "limits.rate_per_token");
        l.check(&RateKey::Token(Arc::from("other"))).expect("another token");
    }

    #[test]
    fn requests_without_an_address_share_one_bucket() {
        let l = limiters((1, 2), (1, 1), false);
        l.check(&RateKey::UnknownAddress).expect("1");
        l.check(&RateKey::UnknownAddress).expect("2");
        assert!(l.check(&RateKey::UnknownAddress).is_err());
    }

    #[test]
    fn loopback_is_exempt_only_when_configured() {
        let loopback = RateKey::Address("127.0.0.1".parse().expect("ip"));
        let strict = limiters((1, 1), (1, 1), false);
        strict.check(&loopback).expect("first");
        assert!(strict.check(&loopback).is_err());
        let exempt = limiters((1, 1), (1, 1), true);
        for _ in 0..10 {
            exempt.check(&loopback).expect("loopback exempt");
        }
        let other = RateKey::Address("192.0.2.9".parse().expect("ip"));
        exempt.check(&other).expect("first");
        assert!(exempt.check(&other).is_err(), "only loopback is exempt");
    }

    #[test]
    fn off_means_unlimited() {
        let l = limiters((0, 0), (0, 0), false);
        for _ in 0..1000 {
            l.check(&RateKey::UnknownAddress).expect("no address limit");
            l.check(&RateKey::Token(Arc::from("t"))).expect("no token limit");
        }
    }

    #[test]
    fn token_lookups_alone_are_swept_too() {
        // Made-up tokens from ever new addresses are counted in the lookup buckets only.
        let l = limiters((1_000_000_000, 1_000_000_000), (1, 1), false);
        for i in 0..(4 * SWEEP_EVERY) {
            let ip = std::net::Ipv4Addr::from_bits(u32::try_from(i).expect("small"));
            l.check_token_lookup(&RateKey::Address(IpAddr::V4(ip)))
                .expect("within the rate");
        }
        assert!(
            l.tracked_keys() < SWEEP_EVERY as usize,
            "{} keys kept",
            l.tracked_keys()
        );
    }

    #[test]
    fn memory_follows_active_keys_only() {
        // A generous rate refills a bucket within nanoseconds of its one request, so the
        // periodic sweep forgets it: thousands of one-off addresses leave few entries.
        let l = limiters((1_000_000_000, 1_000_000_000), (1, 1), false);
        for i in 0..(4 * SWEEP_EVERY) {
            let ip = std::net::Ipv4Addr::from_bits(u32::try_from(i).expect("small"));
            l.check(&RateKey::Address(IpAddr::V4(ip))).expect("within the rate");
        }
        assert!(
            l.tracked_keys() < SWEEP_EVERY as usize,
            "{} keys kept",
            l.tracked_keys()
        );
    }
}
