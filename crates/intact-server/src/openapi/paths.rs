//! Each endpoint as the OpenAPI document describes it: method, path, parameters, bodies and
//! answers. Error answers share one shape (`ErrorBody`), listed as each operation's `default`
//! answer beside the codes a client should expect. The functions are never called: the
//! attribute is what they are for (one of them may describe a path the router serves through
//! a wildcard, such as the reads under `/api/v1/repos/{repo}/...`).

#![allow(dead_code)]

use intact_core::Manifest;
use intact_store::hooks::HookRecord;
use intact_store::tokens::TokenRecord;

use super::schemas::*;

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up.", body = String, content_type = "text/plain")))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The catalog takes a write and the blob store answers.", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready, and why.", body = String, content_type = "text/plain"),
    ))]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics (text exposition format).", body = String,
        content_type = "text/plain; version=0.0.4")))]
fn metrics() {}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document.", body = Object)))]
fn openapi() {}

#[utoipa::path(get, path = "/api/v1/repos", tag = "reads",
    responses(
        (status = 200, description = "The repositories the caller may read.", body = RepoList),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn list_repos() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}", tag = "reads",
    params(("repo" = String, Path, description = "A configured repository.", example = "files")),
    responses(
        (status = 200, description = "The repository's configuration.", body = RepoView),
        (status = 404, description = "No such repository.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn repo_info() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/names", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("prefix" = Option<String>, Query, description = "Only names starting with this."),
        ("after" = Option<String>, Query, description = "The `next` of the previous page."),
        ("limit" = Option<u32>, Query, description = "At most this many (default 1000, at most 10000)."),
    ),
    responses(
        (status = 200, description = "Names with committed versions, sorted.", body = NamesPage),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn names() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@versions", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page."),
        ("limit" = Option<u32>, Query, description = "At most this many (default 1000, at most 10000)."),
    ),
    responses(
        (status = 200, description = "Committed versions, oldest first.", body = VersionsPage),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn versions() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@latest", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
    ),
    responses(
        (status = 200, description = "The manifest of the version committed last.", body = Manifest),
        (status = 404, description = "No such repository, or no version of the name.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn latest() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@v/{version}", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("version" = String, Path, description = "A version.", example = "1.0"),
    ),
    responses(
        (status = 200, description = "The version's manifest.", body = Manifest),
        (status = 404, description = "No such repository or version.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn manifest() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@v/{version}/{path}", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("version" = String, Path, description = "A version.", example = "1.0"),
        ("path" = String, Path, description = "The file's path in the version; its `/` are sent as they are.", example = "tool.txt"),
    ),
    responses(
        (status = 200, description = "The file's bytes, checked against its sha256 as they are sent. \
            `Content-Type` follows the path's extension (`application/octet-stream` when unknown).", body = Bytes, content_type = "*/*"),
        (status = 206, description = "One range of the file (`Range: bytes=a-b`).", body = Bytes, content_type = "*/*"),
        (status = 304, description = "`If-None-Match` named the file's ETag."),
        (status = 404, description = "No such repository, version or file.", body = ErrorBody),
        (status = 416, description = "The range lies past the end of the file."),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn file() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@t/{tag}", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("tag" = String, Path, description = "A tag.", example = "hero"),
    ),
    responses(
        (status = 200, description = "The manifest of the version the tag points at (`x-intact-version` names it; `Content-Location` is its own, immutable, URL; never cached without asking again).", body = Manifest),
        (status = 404, description = "No such repository or tag.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn tagged_manifest() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@t/{tag}/{path}", tag = "reads",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("tag" = String, Path, description = "A tag.", example = "hero"),
        ("path" = String, Path, description = "The file's path in the version; its `/` are sent as they are.", example = "tool.txt"),
    ),
    responses(
        (status = 200, description = "The file's bytes in the version the tag points at (`x-intact-version` names it).", body = Bytes, content_type = "*/*"),
        (status = 206, description = "One range of the file (`Range: bytes=a-b`).", body = Bytes, content_type = "*/*"),
        (status = 304, description = "`If-None-Match` named the file's ETag."),
        (status = 404, description = "No such repository, tag or file.", body = ErrorBody),
        (status = 416, description = "The range lies past the end of the file."),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn tagged_file() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@tags", tag = "tags",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
    ),
    responses(
        (status = 200, description = "The name's tags, by tag.", body = TagsPage),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn list_tags() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@tags/{tag}", tag = "tags",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("tag" = String, Path, description = "A tag.", example = "hero"),
    ),
    responses(
        (status = 200, description = "Where the tag points.", body = intact_store::TagRecord),
        (status = 404, description = "No such repository or tag.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn get_tag() {}

#[utoipa::path(put, path = "/api/v1/repos/{repo}/{name}/@tags/{tag}", tag = "tags",
    params(
        ("repo" = String, Path, description = "A hosted generic repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("tag" = String, Path, description = "A tag.", example = "hero"),
    ),
    request_body = crate::api::tags::MoveTagBody,
    responses(
        (status = 200, description = "The tag points at `version` (`moved` false: it did already).", body = TagMoveAnswer),
        (status = 404, description = "No such repository or version.", body = ErrorBody),
        (status = 409, description = "The tag points elsewhere than `expect` said (`tag_moved`, with `current`).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn move_tag() {}

#[utoipa::path(delete, path = "/api/v1/repos/{repo}/{name}/@tags/{tag}", tag = "tags",
    params(
        ("repo" = String, Path, description = "A hosted generic repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("tag" = String, Path, description = "A tag.", example = "hero"),
        ("expect" = Option<String>, Query, description = "Remove it only if it points at this version."),
    ),
    responses(
        (status = 204, description = "Removed (its history keeps the removal)."),
        (status = 404, description = "No such repository or tag.", body = ErrorBody),
        (status = 409, description = "The tag points elsewhere than `expect` said (`tag_moved`).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn delete_tag() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/{name}/@tags/{tag}/@history", tag = "tags",
    params(
        ("repo" = String, Path, description = "A configured repository.", example = "files"),
        ("name" = String, Path, description = "A name; its `/` are sent as they are, not encoded.", example = "tool"),
        ("tag" = String, Path, description = "A tag.", example = "hero"),
        ("before" = Option<i64>, Query, description = "The `next_before` of the previous page."),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100, at most 1000)."),
    ),
    responses(
        (status = 200, description = "The tag's moves, newest first.", body = TagHistoryPage),
        (status = 404, description = "No such repository, or the tag never existed.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn tag_history() {}

#[utoipa::path(delete, path = "/api/v1/transactions/{id}/files/{path}", tag = "publishing",
    params(
        ("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$"),
        ("path" = String, Path, description = "The file's path in the version; its `/` are sent as they are."),
    ),
    responses(
        (status = 204, description = "The path is no longer in the transaction (an edit drops a file of the version it started from)."),
        (status = 404, description = "No such transaction, or it holds no such path.", body = ErrorBody),
        (status = 409, description = "Not open.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn delete_file() {}

#[utoipa::path(post, path = "/api/v1/repos/{repo}/transactions", tag = "publishing",
    params(("repo" = String, Path, description = "A hosted generic repository; with `import`, a hosted or proxy repository of any format.", example = "files")),
    request_body = crate::api::transactions::CreateTxn,
    responses(
        (status = 201, description = "A transaction was opened.", body = TxnView),
        (status = 200, description = "The idempotency key's transaction, still open or already committed (then with its `manifest`).", body = TxnView),
        (status = 403, description = "`import` without a token of scope `*:admin` (`forbidden`).", body = ErrorBody),
        (status = 409, description = "Another open transaction holds this version (`locked`).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn create_transaction() {}

#[utoipa::path(get, path = "/api/v1/transactions/{id}", tag = "publishing",
    params(("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$")),
    responses(
        (status = 200, description = "The transaction.", body = TxnView),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn get_transaction() {}

#[utoipa::path(delete, path = "/api/v1/transactions/{id}", tag = "publishing",
    params(("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$")),
    responses(
        (status = 204, description = "Rolled back: nothing of it is visible, its staged files are released."),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn abort_transaction() {}

#[utoipa::path(post, path = "/api/v1/transactions/{id}/renew", tag = "publishing",
    params(("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$")),
    responses(
        (status = 200, description = "The lease was renewed.", body = TxnView),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn renew_transaction() {}

#[utoipa::path(post, path = "/api/v1/transactions/{id}/commit", tag = "publishing",
    params(("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$")),
    responses(
        (status = 201, description = "Committed: the version is visible, whole.", body = Manifest),
        (status = 200, description = "Already committed (a retried commit).", body = Manifest),
        (status = 409, description = "Not open, a conflict with the existing version, or uploads still streaming.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn commit_transaction() {}

#[utoipa::path(put, path = "/api/v1/transactions/{id}/files/{path}", tag = "publishing",
    params(
        ("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$"),
        ("path" = String, Path, description = "The file's path in the version; its `/` are sent as they are."),
        ("x-checksum-sha256" = Option<String>, Header, description = "The body's sha256 (hex): checked before the file is staged."),
        ("x-blob-sha256" = Option<String>, Header, description = "Add the file by the digest (hex) of bytes the store already holds, with no body (see `POST /api/v1/blobs/missing`); 409 `blob_not_stored` when it holds none."),
    ),
    request_body(content = Bytes, content_type = "application/octet-stream", description = "The file's bytes, streamed (none with `x-blob-sha256`)."),
    responses(
        (status = 201, description = "Staged into the transaction.", body = StagedFile),
        (status = 409, description = "Not open, or (`x-blob-sha256`) no blob with that digest is stored: upload the bytes.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn put_file() {}

#[utoipa::path(post, path = "/api/v1/transactions/{id}/import", tag = "publishing",
    params(("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$")),
    request_body(content = crate::api::import::ImportRequest,
        description = "Files the server reads from its own filesystems (inside `[import] allowed_roots`), staged without their bytes crossing the network. Needs `publish` on the transaction's repo."),
    responses(
        (status = 201, description = "Every file staged, in the order asked, with the mode that brought it in.", body = crate::api::import::ImportAnswer),
        (status = 400, description = "A bad entry, a source that is not a regular file, a sha256 the bytes do not have, or a mode the filesystem or blob store cannot honour; the message names the file and why. Files before the one refused stay staged.", body = ErrorBody),
        (status = 403, description = "Import by path is off (`import_disabled`: `[import] allowed_roots` is empty), or a source is outside the allowed roots or unreadable (`import_forbidden`).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn import_files() {}

#[utoipa::path(post, path = "/api/v1/transactions/{id}/uploads", tag = "publishing",
    params(("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$")),
    request_body(content = crate::api::uploads::CreateUpload, description = "The file's path, and its size and sha256 when known."),
    responses(
        (status = 201, description = "A resumable upload at offset 0; `Location` is its URL.", body = intact_store::UploadSession,
            headers(("Location" = String, description = "The upload's URL."), ("Upload-Offset" = u64, description = "Bytes held durably."))),
        (status = 409, description = "The transaction is not open.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn create_upload() {}

#[utoipa::path(get, path = "/api/v1/transactions/{id}/uploads/{upload}", tag = "publishing",
    params(
        ("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$"),
        ("upload" = String, Path, description = "An upload id.", pattern = "^[0-9a-f]{32}$"),
    ),
    responses(
        (status = 200, description = "The upload and the offset it holds durably (`HEAD` answers the headers alone).", body = intact_store::UploadSession,
            headers(("Upload-Offset" = u64, description = "Bytes held durably: where the next request starts."),
                    ("Range" = String, description = "`0-(offset-1)`, when the offset is past 0."))),
        (status = 404, description = "No such upload (completed, discarded, or its transaction ended).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn upload_status() {}

#[utoipa::path(patch, path = "/api/v1/transactions/{id}/uploads/{upload}", tag = "publishing",
    params(
        ("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$"),
        ("upload" = String, Path, description = "An upload id.", pattern = "^[0-9a-f]{32}$"),
        ("content-range" = Option<String>, Header, description = "`bytes START-END/TOTAL` (END inclusive, TOTAL or `*`): START must be the upload's offset. Without it the body goes at the offset."),
    ),
    request_body(content = Bytes, content_type = "application/octet-stream", description = "The next bytes of the file, streamed."),
    responses(
        (status = 202, description = "Appended; `Upload-Offset` is the new offset.",
            headers(("Upload-Offset" = u64, description = "Bytes held durably."), ("Range" = String, description = "`0-(offset-1)`."))),
        (status = 416, description = "START is not the upload's offset: resume at `Upload-Offset`.", body = ErrorBody,
            headers(("Upload-Offset" = u64, description = "Bytes held durably."))),
        (status = "default", description = "An error (a broken body keeps what arrived: ask the offset).", body = ErrorBody),
    ))]
fn append_upload() {}

#[utoipa::path(put, path = "/api/v1/transactions/{id}/uploads/{upload}", tag = "publishing",
    params(
        ("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$"),
        ("upload" = String, Path, description = "An upload id.", pattern = "^[0-9a-f]{32}$"),
        ("x-checksum-sha256" = Option<String>, Header, description = "The file's sha256 (hex): checked before the file is staged."),
        ("content-range" = Option<String>, Header, description = "For a last piece sent with the completion, as for `PATCH`."),
    ),
    request_body(content = Bytes, content_type = "application/octet-stream", description = "Optionally the last bytes of the file."),
    responses(
        (status = 201, description = "The bytes were hashed and the file staged into the transaction.", body = StagedFile),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn complete_upload() {}

#[utoipa::path(delete, path = "/api/v1/transactions/{id}/uploads/{upload}", tag = "publishing",
    params(
        ("id" = String, Path, description = "A transaction id.", pattern = "^tx_[a-z2-7]{26}$"),
        ("upload" = String, Path, description = "An upload id.", pattern = "^[0-9a-f]{32}$"),
    ),
    responses(
        (status = 204, description = "Discarded, with its bytes."),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn discard_upload() {}

#[utoipa::path(post, path = "/api/v1/blobs/missing", tag = "publishing",
    request_body(content = crate::api::blobs::MissingRequest, description = "Up to 10,000 sha256 digests."),
    responses(
        (status = 200, description = "The digests the store does not hold, in the order asked, each once. Upload those; add the others by digest.", body = crate::api::blobs::MissingAnswer),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn blobs_missing() {}

#[utoipa::path(post, path = "/api/v1/repos/{repo}/publish", tag = "publishing",
    params(("repo" = String, Path, description = "A hosted generic repository.", example = "files")),
    request_body(content = PublishForm, content_type = "multipart/form-data",
        description = "Text fields first, then one part per file. One transaction: any failure rolls all of it back."),
    responses(
        (status = 201, description = "Published.", body = Manifest),
        (status = 200, description = "An idempotent retry, or the same content published already.", body = Manifest),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn publish() {}

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(
        ("after" = Option<i64>, Query, description = "Events after this sequence number (default 0)."),
        ("wait_seconds" = Option<u64>, Query, description = "Wait up to this long (at most 300) for an event."),
        ("limit" = Option<u32>, Query, description = "At most this many (default 1000, at most 10000)."),
    ),
    responses(
        (status = 200, description = "Events in commit order, of repositories the caller may read.", body = EventsPage),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn events() {}

#[utoipa::path(get, path = "/api/v1/transactions", tag = "publishing",
    params(
        ("limit" = Option<u32>, Query, description = "At most this many (default 100, 1-1000)."),
    ),
    responses(
        (status = 200, description = "Open transactions of repositories the caller may read, with who holds each and when its lease runs out, the soonest to expire first.", body = OpenTransactions),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn open_transactions() {}

#[utoipa::path(post, path = "/api/v1/admin/gc", tag = "admin",
    request_body(content = crate::api::GcRequest, description = "An empty body means `{}`; the call still needs `Content-Type: application/json`, like every admin `POST`."),
    responses(
        (status = 200, description = "What the collection did.", body = GcAnswer),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn gc() {}

#[utoipa::path(get, path = "/api/v1/admin/gc", tag = "admin",
    responses(
        (status = 200, description = "The background sweeper.", body = SweeperStatus),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn gc_status() {}

#[utoipa::path(post, path = "/api/v1/admin/verify", tag = "admin",
    request_body(content = Object, description = "Ignored; send `{}` or nothing, with `Content-Type: application/json` either way, like every admin `POST`."),
    responses(
        (status = 200, description = "Every committed blob re-hashed.", body = VerifyAnswer),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn verify() {}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    responses(
        (status = 200, description = "Every token, revoked ones too; never a secret.", body = TokenList),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn list_tokens() {}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin",
    request_body = crate::api::tokens::CreateToken,
    responses(
        (status = 201, description = "The token, with its secret (shown only here).", body = NewTokenAnswer),
        (status = 409, description = "The name is taken (names are never reused).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn create_token() {}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "admin",
    params(
        ("name" = String, Path, description = "A token's name."),
    ),
    responses(
        (status = 200, description = "Revoked: refused from the next request on.", body = TokenRecord),
        (status = 404, description = "No such token.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn revoke_token() {}

#[utoipa::path(get, path = "/api/v1/hooks", tag = "admin",
    responses(
        (status = 200, description = "Every webhook with its delivery status.", body = HookList),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn list_hooks() {}

#[utoipa::path(post, path = "/api/v1/hooks", tag = "admin",
    request_body = crate::hooks::api::CreateHook,
    responses(
        (status = 201, description = "The webhook, with its secret (shown only here).", body = NewHookAnswer),
        (status = 409, description = "The name is taken.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn create_hook() {}

#[utoipa::path(get, path = "/api/v1/hooks/{name}", tag = "admin",
    params(("name" = String, Path, description = "A webhook's name.")),
    responses(
        (status = 200, description = "The webhook with its delivery status.", body = HookRecord),
        (status = 404, description = "No such webhook.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn show_hook() {}

#[utoipa::path(delete, path = "/api/v1/hooks/{name}", tag = "admin",
    params(("name" = String, Path, description = "A webhook's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such webhook.", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn delete_hook() {}

#[utoipa::path(post, path = "/api/v1/repos/{repo}/stage", tag = "staging",
    params(("repo" = String, Path, description = "A staging repository (a generic proxy repo).", example = "builds")),
    request_body = crate::staging::api::StageRequest,
    responses(
        (status = 200, description = "Every foreground artifact staged (background ones started).", body = StageAnswer),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn stage() {}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/stage/status", tag = "staging",
    params(
        ("repo" = String, Path, description = "A staging repository (a generic proxy repo).", example = "builds"),
        ("name" = String, Query, description = "The build's name.", example = "x86-release/R1"),
        ("artifacts" = Option<String>, Query, description = "Comma-separated artifacts (default: every configured one)."),
        ("wait_seconds" = Option<u64>, Query, description = "Wait up to this long (at most 300) for all to be staged or failed."),
    ),
    responses(
        (status = 200, description = "Each artifact's state.", body = StageStatus),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn stage_status() {}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "staging",
    params(("id" = String, Path, description = "A staging job's id.")),
    responses(
        (status = 200, description = "The job and its progress.", body = StageJob),
        (status = 404, description = "No such job (jobs are remembered for a while after they end).", body = ErrorBody),
        (status = "default", description = "An error.", body = ErrorBody),
    ))]
fn job() {}
