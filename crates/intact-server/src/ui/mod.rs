//! The web UI: server-rendered HTML pages for browsing repositories, names, versions and
//! their files, and for watching what the server is doing, with one small script for the
//! live parts. Pages live at `/` and under `/ui/`, never over an API path; every page has its
//! own URL and links are real links. Assets are compiled into the binary.
//!
//! Access: a page shows only what its caller may read (`Caller::may`), so the pages need
//! nothing from the authentication layer but the caller. A browser presents its token as the
//! `intact_token` cookie that the sign-in form sets (`session`); the authentication layer
//! believes that cookie for GET and HEAD only, so it can never authorise a write.

mod activity;
mod assets;
pub(crate) mod html;
mod names;
mod page;
pub(crate) mod session;
mod version;
mod versions;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The UI's routes: `/` and `/ui/...`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(names::home))
        .route("/ui/repos/{repo}", get(names::names))
        .route("/ui/repos/{repo}/{*rest}", get(versions::dispatch))
        .route("/ui/activity", get(activity::page))
        .route("/ui/sign-in", get(session::form).post(session::sign_in))
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/assets/app.css", get(assets::css))
        .route("/ui/assets/app.js", get(assets::js))
}
