//! The shapes of the API's answers that are not a domain type of their own: lists, pages,
//! answers that add a field to a record. Handlers serialize these very types, so the document
//! describes what is sent; the few marked "described here" are built as JSON by their
//! handlers, and the property run in the test suite checks answers against them.

use intact_core::{Manifest, Name, RepoName, Timestamp, Version};
use intact_store::catalog::{Event, OpenTxnSummary, SweepProgress, TxnRecord, VersionSummary};
use intact_store::hooks::HookRecord;
use intact_store::tokens::TokenRecord;
use intact_store::{GcReport, VerifyReport};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error answer of the API. `error` is a stable code to branch on, `message` is for
/// humans; other fields depend on the code (`field`, `rule` and `value` for `invalid`,
/// `holder` for `locked`, `differences` for `conflict`, `retry_after_seconds` for
/// `rate_limited`, `limit` for `too_large`...).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "invalid")]
    pub error: String,
    pub message: String,
    /// The input that was wrong, when there is one.
    pub field: Option<String>,
}

/// `GET /api/v1/repos`.
#[derive(Serialize, ToSchema)]
pub struct RepoList {
    pub repos: Vec<RepoView>,
}

/// A configured repository, as a client may see it (an upstream's credentials are never
/// shown). Described here; built from the configuration by `RepoConfig::public_view`.
#[derive(Serialize, ToSchema)]
pub struct RepoView {
    pub name: RepoName,
    /// `hosted`, `proxy` or `group`.
    pub kind: String,
    /// `generic` or `go`.
    pub format: String,
    pub upstream: Option<String>,
    pub members: Option<Vec<RepoName>>,
}

/// `GET /api/v1/repos/{repo}/names`.
#[derive(Serialize, ToSchema)]
pub struct NamesPage {
    pub names: Vec<Name>,
    /// Pass as `after` for the next page; `null` on the last.
    #[schema(required = true)]
    pub next: Option<Name>,
}

/// `GET /api/v1/repos/{repo}/{name}/@versions`, serialized straight from the rows (no
/// intermediate JSON tree: this answer can hold 10,000 entries).
#[derive(Serialize, ToSchema)]
pub struct VersionsPage<'a> {
    #[schema(value_type = Vec<VersionSummary>)]
    pub versions: &'a [VersionSummary],
    /// Pass as `after` for the next page; `null` on the last.
    #[schema(required = true)]
    pub next: Option<Version>,
}

/// `GET /api/v1/transactions`.
#[derive(Serialize, ToSchema)]
pub struct OpenTransactions {
    /// Open transactions of repos the caller may read, the soonest to expire first.
    pub transactions: Vec<OpenTxnSummary>,
}

/// `GET /api/v1/events`.
#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<Event>,
    /// The sequence number to ask after next time.
    pub next: i64,
}

/// A transaction; when opening one found the version already committed under the same
/// idempotency key, also that version's `manifest`.
#[derive(Serialize, ToSchema)]
pub struct TxnView<'a> {
    #[serde(flatten)]
    #[schema(inline, value_type = TxnRecord)]
    pub txn: &'a TxnRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Manifest>)]
    pub manifest: Option<&'a Manifest>,
}

/// `POST /api/v1/admin/gc`: what the collection did; `evicted` when staging repos' size
/// limits evicted versions.
#[derive(Serialize, ToSchema)]
pub struct GcAnswer {
    #[serde(flatten)]
    #[schema(inline)]
    pub report: GcReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evicted: Option<serde_json::Value>,
}

/// `GET /api/v1/admin/gc`: the background sweeper. Described here; built by
/// `sweeper_status`.
#[derive(Serialize, ToSchema)]
pub struct SweeperStatus {
    #[serde(flatten)]
    #[schema(inline)]
    pub progress: SweepProgress,
    pub running: bool,
    #[schema(required = true)]
    pub holder: Option<String>,
    pub lease_until: Timestamp,
    pub now: Timestamp,
    #[schema(required = true)]
    pub next_pass_due: Option<Timestamp>,
    pub interval_seconds: u64,
    pub orphan_sweep_interval_seconds: u64,
    pub page_size: u64,
}

/// `POST /api/v1/admin/verify`.
#[derive(Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// Whether no problem was found.
    pub ok: bool,
    #[serde(flatten)]
    #[schema(inline)]
    pub report: VerifyReport,
}

/// `GET /api/v1/tokens`.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

/// A token just made, with its secret (shown only in this answer).
#[derive(Serialize, ToSchema)]
pub struct NewTokenAnswer {
    #[serde(flatten)]
    #[schema(inline)]
    pub token: TokenRecord,
    pub secret: String,
}

/// `GET /api/v1/hooks`.
#[derive(Serialize, ToSchema)]
pub struct HookList {
    pub hooks: Vec<HookRecord>,
}

/// A webhook just made, with its secret (shown only in this answer).
#[derive(Serialize, ToSchema)]
pub struct NewHookAnswer {
    #[serde(flatten)]
    #[schema(inline)]
    pub hook: HookRecord,
    pub secret: String,
}

/// A file just staged into a transaction.
#[derive(Serialize, ToSchema)]
pub struct StagedFile {
    pub path: intact_core::FilePath,
    pub size: u64,
    pub sha256: intact_core::Digest,
}

/// `GET /api/v1/repos/{repo}/stage/status`. Described here; built by the staging handlers.
#[derive(Serialize, ToSchema)]
pub struct StageStatus {
    pub repo: RepoName,
    pub name: Name,
    /// Whether every artifact asked about is staged or failed.
    pub done: bool,
    pub artifacts: Vec<StageItem>,
}

/// One artifact's staging state. Described here; built by the staging handlers.
#[derive(Serialize, ToSchema)]
pub struct StageItem {
    pub artifact: Version,
    /// `artifact` (a configured one) or `file` (a raw file).
    pub kind: Option<String>,
    /// `staged`, `staging`, `failed` or `absent`.
    pub state: String,
    /// The staging job, while one runs.
    pub job: Option<String>,
    /// Why it failed (`failed`): a stable code, and words for people.
    pub error: Option<String>,
    pub message: Option<String>,
}

/// `POST /api/v1/repos/{repo}/stage`. Described here; built by the staging handlers.
#[derive(Serialize, ToSchema)]
pub struct StageAnswer {
    pub repo: RepoName,
    pub name: Name,
    /// The foreground artifacts and files, each staged or failed.
    pub items: Vec<StageItem>,
    /// The background ones: staged already, started (`staging`, with its `job`), or failed.
    pub background: Vec<StageItem>,
}

/// A staging job. Described here; built by `Job::to_json`.
#[derive(Serialize, ToSchema)]
pub struct StageJob {
    pub id: String,
    pub repo: RepoName,
    pub name: Name,
}

/// The fields of `POST /api/v1/repos/{repo}/publish`. Every other part is a file, stored
/// under its field name (or its file name when the field is `file` or `files`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PublishForm {
    pub name: String,
    /// A version, or `auto` for the next integer version. Not `latest` (in any case): readers
    /// ask for that to get the newest version.
    pub version: String,
    /// A JSON object.
    pub metadata: Option<String>,
    pub idempotency_key: Option<String>,
    /// Seconds; activity renews the lease by this much.
    pub lease_seconds: Option<String>,
    #[schema(value_type = Option<String>, format = Binary)]
    pub file: Option<Vec<u8>>,
}

/// File bytes (a request or an answer body).
pub struct Bytes;

impl utoipa::PartialSchema for Bytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .build()
            .into()
    }
}

impl ToSchema for Bytes {}

/// `PUT /api/v1/repos/{repo}/{name}/@tags/{tag}`: where the tag points now and before.
#[derive(Serialize, ToSchema)]
pub struct TagMoveAnswer {
    pub tag: intact_core::Tag,
    pub version: Option<Version>,
    /// Where it pointed before the move (`null`: it was created).
    #[schema(required = true)]
    pub previous: Option<Version>,
    /// `false` when it already pointed at `version` (a retried move): nothing changed.
    pub moved: bool,
    pub moved_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_by: Option<String>,
}

/// `GET /api/v1/repos/{repo}/{name}/@tags`.
#[derive(Serialize, ToSchema)]
pub struct TagsPage {
    pub tags: Vec<intact_store::TagRecord>,
}

/// `GET /api/v1/repos/{repo}/{name}/@tags/{tag}/@history`: moves, newest first.
#[derive(Serialize, ToSchema)]
pub struct TagHistoryPage {
    pub history: Vec<intact_store::TagHistoryEntry>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    #[schema(required = true)]
    pub next_before: Option<i64>,
}
