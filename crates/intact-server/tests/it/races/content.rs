//! Whose bytes are these: every publish's content is derived from its author (client and
//! attempt), so a checker can tell from a manifest alone which publish it came from and
//! whether each file holds exactly that publish's bytes.

use std::collections::BTreeMap;

use intact_core::{Digest, Manifest};
use serde_json::{Value, json};

use super::Rng;

/// Who wrote a publish: a client and its attempt counter. Unique per publish attempt; the
/// metadata and every file of the publish name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Author {
    pub client: u32,
    pub attempt: u32,
}

impl Author {
    /// The idempotency key this publish uses when it uses one.
    pub fn key(self) -> String {
        format!("races-c{}-a{}", self.client, self.attempt)
    }

    /// The author a version's metadata names.
    pub fn of_metadata(metadata: &Value) -> Option<Self> {
        Some(Self {
            client: u32::try_from(metadata["client"].as_u64()?).ok()?,
            attempt: u32::try_from(metadata["attempt"].as_u64()?).ok()?,
        })
    }
}

impl std::fmt::Display for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}/a{}", self.client, self.attempt)
    }
}

/// How to make a file's bytes again: a header line naming the publish, then seeded noise.
#[derive(Clone, Debug)]
pub struct Recipe {
    header: String,
    seed: u64,
    len: usize,
}

impl Recipe {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.header.clone().into_bytes();
        if self.len > 0 {
            out.extend(crate::pseudo_random(self.seed, self.len));
        }
        out
    }
}

/// A file as its publisher meant it.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub recipe: Recipe,
    pub size: u64,
    pub sha256: Digest,
}

impl FileSpec {
    fn new(recipe: Recipe) -> Self {
        let bytes = recipe.bytes();
        Self {
            size: bytes.len() as u64,
            sha256: Digest::of(&bytes),
            recipe,
        }
    }
}

/// The paths publishes choose from. `LICENSE` holds one of a few contents every client
/// shares and `empty` is always empty, so blobs are deduplicated across versions and
/// transactions (and a rollback's reclaim races other publishes staging the same digest).
const OWN_PATHS: [&str; 3] = ["a.bin", "docs/readme.txt", "deep/x/y/z.dat"];
pub const SHARED_PATH: &str = "LICENSE";
pub const EMPTY_PATH: &str = "empty";

/// One publish attempt: what its author sends (name, version, metadata, files).
#[derive(Clone, Debug)]
pub struct Publish {
    pub author: Author,
    pub name: String,
    /// `None` when `auto` went out in a multipart publish and the server picks the number.
    pub version: Option<String>,
    pub metadata: Value,
    pub files: BTreeMap<String, FileSpec>,
    /// Bytes uploaded and then replaced by a second PUT of the same path: never visible.
    pub superseded: BTreeMap<String, FileSpec>,
}

impl Publish {
    /// The metadata of `author`'s publish asked for as `spec` (a version or `auto`).
    pub fn metadata_for(author: Author, spec: &str) -> Value {
        json!({"client": author.client, "attempt": author.attempt, "spec": spec})
    }

    /// A publish of `name` asked for as `spec`, with fresh content. `version` is the version
    /// it gets (`None`: a multipart `auto`, where the server picks).
    pub fn fresh(rng: &mut Rng, author: Author, name: &str, spec: &str, version: Option<&str>) -> Self {
        let mut files = BTreeMap::new();
        let count = rng.below(4);
        for _ in 0..count {
            let path = match rng.below(10) {
                0..=5 => *rng.pick(&OWN_PATHS),
                6..=8 => SHARED_PATH,
                _ => EMPTY_PATH,
            };
            let recipe = match path {
                SHARED_PATH => shared_recipe(rng.below(3)),
                EMPTY_PATH => Recipe {
                    header: String::new(),
                    seed: 0,
                    len: 0,
                },
                _ => own_recipe(rng, author, name, version, path, "final"),
            };
            files.insert(path.to_owned(), FileSpec::new(recipe));
        }
        Self {
            author,
            name: name.to_owned(),
            version: version.map(str::to_owned),
            metadata: Self::metadata_for(author, spec),
            files,
            superseded: BTreeMap::new(),
        }
    }

    /// Another publish of an existing version: `existing`'s files under a new author's
    /// metadata (so it differs in metadata only).
    pub fn same_files(existing: &Publish, author: Author, version: &str) -> Self {
        Self {
            author,
            name: existing.name.clone(),
            version: Some(version.to_owned()),
            metadata: json!({
                "client": author.client,
                "attempt": author.attempt,
                "spec": version,
                "copied_from": existing.author.to_string(),
            }),
            files: existing.files.clone(),
            superseded: BTreeMap::new(),
        }
    }

    /// Makes up bytes this publish uploads to `path` first and then replaces (a second PUT).
    pub fn supersede(&mut self, rng: &mut Rng, path: &str) {
        let version = self.version.clone();
        let recipe = own_recipe(rng, self.author, &self.name, version.as_deref(), path, "superseded");
        self.superseded.insert(path.to_owned(), FileSpec::new(recipe));
    }

    /// Whether `m` is exactly what this publish would commit: its name and version, its
    /// metadata, and for every file, this publish's bytes. `paths`, when given, are the
    /// files that must be there (the ones the publisher had staged).
    pub fn check(&self, m: &Manifest, paths: Option<&[String]>) -> Result<(), String> {
        if m.name.as_str() != self.name {
            return Err(format!("name {} but {} published {}", m.name, self.author, self.name));
        }
        match &self.version {
            Some(v) if v != m.version.as_str() => {
                return Err(format!("version {} but {} published {v}", m.version, self.author));
            }
            None if m.version.as_auto_number().is_none() => {
                return Err(format!(
                    "{} published `auto` but got version {}",
                    self.author, m.version
                ));
            }
            _ => {}
        }
        if m.metadata != self.metadata {
            return Err(format!(
                "metadata {} but {} sent {}",
                m.metadata, self.author, self.metadata
            ));
        }
        for f in &m.files {
            let path = f.path.as_str();
            if self.superseded.get(path).is_some_and(|s| s.sha256 == f.sha256) {
                return Err(format!(
                    "{path} holds the bytes {} replaced by a second PUT",
                    self.author
                ));
            }
            let Some(spec) = self.files.get(path) else {
                return Err(format!("{path} is not a file {} published", self.author));
            };
            if spec.sha256 != f.sha256 || spec.size != f.size {
                return Err(format!(
                    "{path} is {} ({} bytes), {} sent {} ({} bytes)",
                    f.sha256, f.size, self.author, spec.sha256, spec.size
                ));
            }
        }
        if let Some(paths) = paths {
            let got: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
            if got != paths {
                return Err(format!("files {got:?}, but {} had staged {paths:?}", self.author));
            }
        }
        Ok(())
    }
}

fn own_recipe(rng: &mut Rng, author: Author, name: &str, version: Option<&str>, path: &str, kind: &str) -> Recipe {
    // Mostly small, sometimes past the 256 KiB the blob store reads in one go (the
    // streaming read path), never so big that a CI run spends its time hashing.
    let len = match rng.below(20) {
        0..=11 => rng.below(1500),
        12..=16 => 1500 + rng.below(20_000),
        17..=18 => 20_000 + rng.below(60_000),
        _ => 256 * 1024 + rng.below(100_000),
    } as usize;
    Recipe {
        header: format!(
            "intact-races {kind} client={} attempt={} name={name} version={} path={path}\n",
            author.client,
            author.attempt,
            version.unwrap_or("auto"),
        ),
        seed: rng.next_u64(),
        len,
    }
}

fn shared_recipe(k: u64) -> Recipe {
    Recipe {
        header: format!("intact-races shared content #{k}\n"),
        seed: 0x5eed_0000 + k,
        len: [1000, 70_000, 5][k as usize % 3],
    }
}
