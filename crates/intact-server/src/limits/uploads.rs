//! Uploads streaming at once (file PUTs, one-shot publishes, Go publishes), over all clients.
//! Past `limits.max_concurrent_uploads` a new upload is refused at once, never queued: a
//! queue would hold its connection and its body anyway, which is what the limit is for.
//!
//! The refusal is **503** with `Retry-After`, not 429: the server as a whole is busy, and the
//! client refused may have sent a single request; 503 is what clients (the go command, HTTP
//! libraries' retry policies, load balancers) read as "this server, try later or elsewhere".

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use super::Limits;
use super::refusal::LimitRefusal;

/// How long a refused uploader is asked to wait: uploads take seconds to minutes, and a
/// slot frees whenever one ends.
const RETRY_AFTER_SECONDS: u64 = 5;

pub(crate) struct UploadSlots {
    slots: Arc<Semaphore>,
    max: u32,
}

impl UploadSlots {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }
}

/// Route layer of the upload routes: holds one slot while the handler (which reads the whole
/// body) runs.
pub(crate) async fn upload_slot(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let Ok(_slot) = limits.uploads.slots.clone().try_acquire_owned() else {
        return LimitRefusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            limit: "limits.max_concurrent_uploads",
            message: format!(
                "the server is receiving {} uploads already, the most it takes at once \
                 (limits.max_concurrent_uploads); retry after {RETRY_AFTER_SECONDS}s",
                limits.uploads.max
            ),
            retry_after: Some(RETRY_AFTER_SECONDS),
        }
        .into_response(req.uri().path());
    };
    next.run(req).await
}
