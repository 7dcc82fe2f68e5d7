//! A Go repo's own settings, checked with the rest of the configuration (at start-up and by
//! `intact config check`), so that every mistake is named with its repo and key before
//! anything is opened.

use crate::config::{ChecksumDbSetting, DirectConfig, RepoConfig, RepoFormat, RepoKind};

use super::{direct, upstream};

/// Every problem with `repo`'s Go settings; empty when there is none.
pub fn problems(repo: &RepoConfig) -> Vec<String> {
    let n = &repo.name;
    let mut problems = Vec::new();
    let is_go_proxy = repo.format == RepoFormat::Go && repo.kind == RepoKind::Proxy;
    if !is_go_proxy {
        for (key, set) in [
            ("exclude", !repo.exclude.is_empty()),
            ("allow", !repo.allow.is_empty()),
            ("deny", !repo.deny.is_empty()),
            ("network_mode", repo.network_mode.is_some()),
            ("checksum_db", repo.checksum_db.is_some()),
            ("no_sum", !repo.no_sum.is_empty()),
            ("direct", repo.direct.is_some()),
        ] {
            if set {
                problems.push(format!(
                    "repo {n}: {key} applies to Go proxy repos only (kind = \"proxy\", format = \"go\")"
                ));
            }
        }
        return problems;
    }
    if let Some(up) = repo.upstream.as_deref().filter(|u| !u.trim().is_empty())
        && let Err(e) = upstream::parse_list(up)
    {
        problems.push(format!(
            "repo {n}: upstream {:?}: {e}",
            crate::config::without_credentials(up)
        ));
    }
    for glob in &repo.exclude {
        if glob.trim().is_empty() || glob.contains(',') {
            problems.push(format!(
                "repo {n}: exclude pattern {glob:?} must be one non-empty glob (list several as separate strings)"
            ));
        } else if intact_go::pattern::path_match_checked(glob, glob).is_none() {
            problems.push(format!("repo {n}: exclude pattern {glob:?} is not a valid glob"));
        }
    }
    for (key, v) in [
        ("fetch_timeout_seconds", repo.fetch_timeout_seconds),
        ("fetch_deadline_seconds", repo.fetch_deadline_seconds),
    ] {
        if v == Some(0) {
            problems.push(format!("repo {n}: {key} must be at least 1"));
        }
    }
    for glob in &repo.no_sum {
        if glob.trim().is_empty() || glob.contains(',') {
            problems.push(format!(
                "repo {n}: no_sum pattern {glob:?} must be one non-empty glob (list several as separate strings)"
            ));
        } else if intact_go::pattern::path_match_checked(glob, glob).is_none() {
            problems.push(format!("repo {n}: no_sum pattern {glob:?} is not a valid glob"));
        }
    }
    if let Some(ChecksumDbSetting::Database(db)) = &repo.checksum_db {
        // Its tiles and tree heads are stored under names built from it.
        if intact_core::Name::parse_internal(&format!("@sumdb/{}/latest", db.name)).is_err() {
            problems.push(format!(
                "repo {n}: checksum_db.name {:?} must be a host-like name (letters, digits, '.', '-', '_', '~')",
                db.name
            ));
        }
        match intact_go::sumdb::note::Verifier::parse(&db.key) {
            Ok(v) if v.name() != db.name => problems.push(format!(
                "repo {n}: checksum_db.key is the key of {:?}, not of {:?}",
                v.name(),
                db.name
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("repo {n}: checksum_db.key: {e}")),
        }
        let url_ok = reqwest::Url::parse(&db.url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.query().is_none() && u.host().is_some());
        if !url_ok {
            problems.push(format!(
                "repo {n}: checksum_db.url {:?} must be an http(s) URL without a query",
                crate::config::without_credentials(&db.url)
            ));
        }
    }
    if let Some(direct) = &repo.direct {
        problems.extend(direct_problems(repo, direct));
    }
    if let Err(bad) = intact_go::rules::Rules::parse(&repo.allow, &repo.deny) {
        problems.extend(bad.into_iter().map(|why| format!("repo {n}: {why}")));
    }
    problems
}

/// Problems with `[repo.direct]`.
fn direct_problems(repo: &RepoConfig, direct: &DirectConfig) -> Vec<String> {
    let n = &repo.name;
    let mut problems = Vec::new();
    let lists_direct = repo
        .upstream
        .as_deref()
        .and_then(|up| upstream::parse_list(up).ok())
        .is_some_and(|entries| entries.iter().any(|e| e.source == upstream::Source::Direct));
    if !lists_direct {
        problems.push(format!(
            "repo {n}: [repo.direct] is only used when the upstream list has \"direct\" (e.g. upstream = \"https://proxy.golang.org,direct\")"
        ));
    }
    for (key, path) in [("netrc", &direct.netrc), ("git_config", &direct.git_config)] {
        if let Some(path) = path
            && !path.is_absolute()
        {
            problems.push(format!("repo {n}: direct.{key} {path:?} must be an absolute path"));
        }
    }
    if let Some(go) = &direct.go
        && go.as_os_str().is_empty()
    {
        problems.push(format!("repo {n}: direct.go must name the go command"));
    }
    for glob in &direct.insecure {
        if glob.trim().is_empty() || glob.contains(',') {
            problems.push(format!(
                "repo {n}: direct.insecure pattern {glob:?} must be one non-empty glob (list several as separate strings)"
            ));
        } else if intact_go::pattern::path_match_checked(glob, glob).is_none() {
            problems.push(format!(
                "repo {n}: direct.insecure pattern {glob:?} is not a valid glob"
            ));
        }
    }
    for (key, value) in &direct.env {
        if let Some((_, instead)) = direct::RESERVED_ENV.iter().find(|(reserved, _)| reserved == key) {
            problems.push(format!("repo {n}: direct.env.{key} is set by intact itself: {instead}"));
        } else if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            problems.push(format!(
                "repo {n}: direct.env.{key:?} is not a valid environment variable (no '=' or NUL in its name, no NUL in its value)"
            ));
        }
    }
    problems
}
