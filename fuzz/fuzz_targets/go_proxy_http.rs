//! The Go module proxy through the real router: protocol paths on a hosted repo, a proxy repo
//! over a file upstream and a group of both, and publishes (query + zip body) into the hosted
//! repo. Whatever the path, the answer is 200, 404/410 (so `go` falls through), 304 or 405,
//! never a 400 or 5xx; a 200 `.info` is a valid info document, a 200 `.zip` a valid zip of
//! exactly the module and version asked for, a 200 `list` tagged versions only. A publish is
//! never a 5xx.
#![no_main]

use std::io::Cursor;
use std::sync::LazyLock;

use http::{Method, StatusCode};
use intact_fuzz::{Server, check_api_answer, encode_uri_part};
use intact_server::go::request::{FileKind, GoRequest};
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Server> = LazyLock::new(|| Server::start("go_proxy_http"));

const REPOS: [&str; 4] = ["go", "go-private", "go-mirror", "files"];

fn get(s: &Server, repo: &str, path: &str) {
    let uri = format!("/go/{repo}/{}", encode_uri_part(path, b"%"));
    let Some(a) = s.try_send(Method::GET, &uri, &[], Vec::new()) else {
        return;
    };
    assert!(
        matches!(
            a.status,
            StatusCode::OK | StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::NOT_MODIFIED
        ),
        "GET {uri}: {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    if a.status != StatusCode::OK {
        return;
    }
    // A 200 answers exactly what the (decoded) path asked for.
    let decoded = reqwest::Url::parse(&format!("http://x{uri}")).ok().and_then(|u| {
        let p = u.path().strip_prefix(&format!("/go/{repo}/"))?.to_owned();
        intact_server::staging::listing::percent_decode(&p)
    });
    let Some(decoded) = decoded else { return };
    match intact_server::go::request::parse(&decoded) {
        Ok(GoRequest::List { .. }) => {
            let body = String::from_utf8(a.body.to_vec()).expect("list is text");
            assert!(
                body.lines().all(intact_server::go::versions::is_listed),
                "{uri}: {body:?}"
            );
        }
        Ok(GoRequest::Latest { .. }) => {
            intact_go::info::parse_info(&a.body).expect("@latest is an info document");
        }
        Ok(GoRequest::File { module, version, kind }) => match kind {
            FileKind::Info => {
                let info = intact_go::info::parse_info(&a.body).expect(".info is an info document");
                assert!(intact_go::semver::is_valid(&info.version));
            }
            FileKind::Mod => {}
            FileKind::Zip => {
                intact_go::zip::check_zip(Cursor::new(a.body.as_ref()), &module, &version)
                    .unwrap_or_else(|e| panic!("{uri}: served zip fails the check for {module}@{version}: {e}"));
            }
        },
        Err(e) => panic!("{uri}: 200 for a path that does not parse ({e:?})"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let s = &*SERVER;
    if selector % 2 == 0 {
        let Ok(path) = std::str::from_utf8(rest) else { return };
        get(s, REPOS[usize::from(selector / 2) % REPOS.len()], path);
    } else {
        let (query, body) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
            None => (rest, Vec::new()),
        };
        let Ok(query) = std::str::from_utf8(query) else { return };
        let uri = format!("/go/go-private/publish?{}", encode_uri_part(query, b"%"));
        let Some(a) = s.try_send(Method::POST, &uri, &[], body) else {
            return;
        };
        check_api_answer(&format!("POST {uri}"), &a);
    }
    s.close_open_transactions();
});
