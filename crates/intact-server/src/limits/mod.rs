//! Request limits (`[limits]`), enforced for every front-end: sizes of bodies, files,
//! metadata and headers, files per transaction, request rates per client address and per
//! token, and uploads streaming at once. Each refusal is a 4xx (or a 503 for a busy server)
//! naming the limit and its configuration key, JSON on the artifact API and `text/plain` on
//! the Go protocol paths.
//!
//! Where each is enforced:
//! * header bytes: the outer guard (`api/guard.rs`), before anything else;
//! * request rate: `rate::refusal`, run by `api::front_door` after authentication (it keys by
//!   token when the request carries one);
//! * concurrent uploads: [`upload_slot`], a route layer on the upload routes;
//! * body, file and metadata sizes: the handlers that read them (`body.rs` helps);
//! * files per transaction: the catalog, inside the write that stages a file.

pub(crate) mod body;
mod rate;
mod refusal;
pub mod settings;
mod uploads;

use std::sync::Arc;

pub use settings::{LimitsSettings, RateSettings, ResolvedLimits};

pub(crate) use body::{BodyOverLimit, explain_body_limit};
pub(crate) use rate::{
    RateKey, count_address_first, count_token_lookup, counted_refusal, rate_key, refusal as rate_refusal,
};
pub(crate) use uploads::upload_slot;

/// The limits in force, shared by every request.
pub struct Limits {
    pub settings: ResolvedLimits,
    rates: rate::RateLimiters,
    uploads: uploads::UploadSlots,
}

impl Limits {
    pub fn new(settings: ResolvedLimits) -> Arc<Self> {
        Arc::new(Self {
            rates: rate::RateLimiters::new(&settings),
            uploads: uploads::UploadSlots::new(settings.max_concurrent_uploads),
            settings,
        })
    }
}
