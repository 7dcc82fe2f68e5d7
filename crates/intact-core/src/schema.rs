//! How the domain's validated strings appear in the OpenAPI document: each is a JSON string
//! (its `Serialize` writes it as one) with the grammar its parser enforces, so a client
//! generated from the document knows what the server will accept. Names and paths carry
//! their grammar in words only: internal names (`@go/...`) also appear in answers.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

fn string(description: &str, pattern: Option<&str>, max_length: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .min_length(Some(1))
        .max_length(Some(max_length))
}

macro_rules! string_schema {
    ($ty:ty, $builder:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($builder.build()))
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

string_schema!(
    crate::RepoName,
    string(
        "A repository: one segment of [A-Za-z0-9._-], not `.` or `..`.",
        Some("^[A-Za-z0-9._-]+$"),
        64
    )
);
string_schema!(
    crate::Name,
    string(
        "A name: `/`-separated segments of [A-Za-z0-9._-], none `.` or `..`, none starting with `@`.",
        None,
        1024
    )
);
string_schema!(
    crate::Version,
    string("A version: [A-Za-z0-9._+-], not `.` or `..`.", None, 128)
);
string_schema!(
    crate::Tag,
    string(
        "A tag: 1-128 characters of [A-Za-z0-9._-], not `.` or `..`.",
        Some("^[A-Za-z0-9._-]+$"),
        128
    )
);
string_schema!(
    crate::FilePath,
    string(
        "A file's path in its version: `/`-separated segments of [A-Za-z0-9._-].",
        None,
        1024
    )
);
string_schema!(
    crate::Digest,
    string("A SHA-256 digest, 64 lowercase hex digits.", Some("^[0-9a-f]{64}$"), 64).min_length(Some(64))
);
string_schema!(
    crate::TxnId,
    string(
        "A transaction id: `tx_` and 26 characters of [a-z2-7].",
        Some("^tx_[a-z2-7]{26}$"),
        29
    )
);
string_schema!(
    crate::Timestamp,
    string("A time, RFC 3339 in UTC with milliseconds.", None, 64)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
);
