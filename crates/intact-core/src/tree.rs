//! Whether a version's file paths can all exist at once on a client's file system: no path
//! is both a file and a directory (`x` and `x/y`), and, unless the repository allows it, no
//! two paths differ only in case (macOS and Windows file systems fold case, so `A.txt` and
//! `a.txt` would overwrite each other there).

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::FilePath;

/// Two paths of one version that cannot both be materialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathClash {
    /// `file` is a file, and also a directory of `under`.
    FileAndDirectory { file: String, under: String },
    /// The two differ only in case.
    CaseOnly { a: String, b: String },
}

impl fmt::Display for PathClash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FileAndDirectory { file, under } => write!(
                f,
                "{file} is a file, and a directory in {under}: no file system can hold both"
            ),
            Self::CaseOnly { a, b } => write!(
                f,
                "{a} and {b} differ only in case: macOS and Windows clients could not hold both \
                 (a repo with case_sensitive_paths = true allows it)"
            ),
        }
    }
}

impl std::error::Error for PathClash {}

/// Checks a version's paths; `case_sensitive` allows paths that differ only in case. Runs in
/// time linear in the total length of the paths.
pub fn check_tree<'a>(paths: impl IntoIterator<Item = &'a FilePath>, case_sensitive: bool) -> Result<(), PathClash> {
    let key = |p: &str| {
        if case_sensitive {
            p.to_owned()
        } else {
            p.to_ascii_lowercase()
        }
    };
    let paths: Vec<&str> = paths.into_iter().map(FilePath::as_str).collect();
    // Folded spelling -> the path first seen with it.
    let mut files: HashMap<String, &str> = HashMap::with_capacity(paths.len());
    for p in &paths {
        if let Some(other) = files.insert(key(p), p)
            && other != *p
        {
            return Err(PathClash::CaseOnly {
                a: other.to_owned(),
                b: (*p).to_owned(),
            });
        }
    }
    // Directory (folded) -> a path under it.
    let mut dirs: HashMap<String, &str> = HashMap::new();
    let mut seen_dirs: HashSet<String> = HashSet::new();
    for p in &paths {
        let mut end = p.len();
        while let Some(slash) = p[..end].rfind('/') {
            let dir = key(&p[..slash]);
            if !seen_dirs.insert(dir.clone()) {
                break;
            }
            dirs.insert(dir, p);
            end = slash;
        }
    }
    for p in &paths {
        if let Some(under) = dirs.get(&key(p)) {
            return Err(PathClash::FileAndDirectory {
                file: (*p).to_owned(),
                under: (*under).to_owned(),
            });
        }
    }
    // A directory spelled two ways (`Docs/a`, `docs/b`) also collides on a case-folding
    // file system: the files land in one directory, under one of the two names.
    if !case_sensitive {
        let mut spelled: HashMap<String, &str> = HashMap::new();
        for p in &paths {
            let mut end = p.len();
            while let Some(slash) = p[..end].rfind('/') {
                let dir = &p[..slash];
                if let Some(other) = spelled.insert(dir.to_ascii_lowercase(), dir)
                    && other != dir
                {
                    return Err(PathClash::CaseOnly {
                        a: other.to_owned(),
                        b: dir.to_owned(),
                    });
                }
                end = slash;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(paths: &[&str], case_sensitive: bool) -> Result<(), PathClash> {
        let parsed: Vec<FilePath> = paths.iter().map(|p| FilePath::parse(p).expect("path")).collect();
        check_tree(&parsed, case_sensitive)
    }

    #[test]
    fn trees_that_fit_pass() {
        assert!(check(&["a", "b/c", "b/d/e", "bc", "b.c/x"], false).is_ok());
        assert!(check(&[], false).is_ok());
        assert!(check(&["A.txt", "a.txt"], true).is_ok());
    }

    #[test]
    fn a_path_cannot_be_a_file_and_a_directory() {
        for (paths, file) in [
            (&["x", "x/y"][..], "x"),
            (&["x/y/z", "x/y"][..], "x/y"),
            (&["d/e/f/g", "a", "d"][..], "d"),
        ] {
            match check(paths, true) {
                Err(PathClash::FileAndDirectory { file: f, .. }) => assert_eq!(f, file, "{paths:?}"),
                other => panic!("{paths:?}: {other:?}"),
            }
        }
        // Folded: `X` is a file, `x/y` needs a directory `x`.
        assert!(matches!(
            check(&["X", "x/y"], false),
            Err(PathClash::FileAndDirectory { .. })
        ));
        assert!(check(&["X", "x/y"], true).is_ok());
    }

    #[test]
    fn case_only_differences_are_refused_unless_allowed() {
        let e = check(&["Readme.md", "README.md"], false).expect_err("clash");
        assert!(
            e.to_string().contains("Readme.md") && e.to_string().contains("README.md"),
            "{e}"
        );
        assert!(matches!(
            check(&["Docs/a", "docs/b"], false),
            Err(PathClash::CaseOnly { .. })
        ));
        assert!(check(&["Docs/a", "docs/b"], true).is_ok());
    }
}
