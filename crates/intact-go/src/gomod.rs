//! Just enough of go.mod syntax (`golang.org/x/mod/modfile`) to read the `module` and `go`
//! directives; everything else in the file is skipped, as a dependency's go.mod is read by
//! the go command.

use crate::GoError;

/// The module path declared by a go.mod file, or `None` if there is none or the file cannot
/// be read (see [`parse_module_path`] to tell the two apart).
pub fn module_path(go_mod: &[u8]) -> Option<String> {
    parse_module_path(go_mod).ok().flatten()
}

/// The module path declared by a go.mod file: `Ok(None)` if there is no `module` directive
/// (the go command then supplies the path it asked for), an error if the directive is
/// malformed or repeated.
///
/// Handles `module example.com/m`, `module "example.com/m"`, `` module `example.com/m` ``,
/// trailing `//` comments and the rarely seen block form `module ( example.com/m )`.
pub fn parse_module_path(go_mod: &[u8]) -> Result<Option<String>, GoError> {
    let mut found = None;
    for args in directives(go_mod, "module")? {
        if found.is_some() {
            return Err(invalid("repeated module statement"));
        }
        match args.as_slice() {
            [arg] => found = Some(arg.clone()),
            _ => return Err(invalid("usage: module module/path")),
        }
    }
    Ok(found)
}

/// The Go language version of the `go` directive, e.g. `"1.21"` or `"1.21.3"`; `None` if the
/// file has no usable `go` directive. Versions are accepted as leniently as
/// `modfile.ParseLax` does for dependencies (`1.21rc1` and `v1.21` read as `1.21`).
pub fn go_directive(go_mod: &[u8]) -> Option<String> {
    let all = directives(go_mod, "go").ok()?;
    let [args] = all.as_slice() else {
        return None;
    };
    let [version] = args.as_slice() else {
        return None;
    };
    let (major, minor, rest) = split_go_version(version.strip_prefix('v').unwrap_or(version))?;
    let strict = !version.starts_with('v') && (rest.is_empty() || is_patch_or_pre(rest));
    if strict {
        Some(version.clone())
    } else if rest.starts_with(|c: char| !c.is_ascii_digit()) {
        Some(format!("{major}.{minor}"))
    } else {
        None
    }
}

/// Whether the language version (major.minor) of a go.mod's `go` directive is at least
/// `major.minor`; false when the file has no usable `go` directive.
pub fn go_version_at_least(go_mod: &[u8], major: u64, minor: u64) -> bool {
    go_directive(go_mod)
        .and_then(|v| {
            let (ma, mi, _) = split_go_version(&v)?;
            Some((ma.parse::<u64>().ok()?, mi.parse::<u64>().ok()?))
        })
        .is_some_and(|have| have >= (major, minor))
}

/// `1.21.3rc1` -> ("1", "21", ".3rc1"); numbers without leading zeros, major not zero.
fn split_go_version(v: &str) -> Option<(&str, &str, &str)> {
    let num = |s: &str| -> Option<usize> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0 && (n == 1 || !s.starts_with('0'))).then_some(n)
    };
    let n = num(v)?;
    let (major, rest) = v.split_at(n);
    if major == "0" {
        return None;
    }
    let rest = rest.strip_prefix('.')?;
    let n = num(rest)?;
    let (minor, rest) = rest.split_at(n);
    Some((major, minor, rest))
}

/// `.3`, `rc1`, `.3rc1` — what may follow major.minor in a strict Go version.
fn is_patch_or_pre(rest: &str) -> bool {
    let rest = match rest.strip_prefix('.') {
        Some(p) => {
            let n = p.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 || (n > 1 && p.starts_with('0')) {
                return false;
            }
            &p[n..]
        }
        None => rest,
    };
    if rest.is_empty() {
        return true;
    }
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = &rest[letters..];
    letters > 0 && !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
}

fn invalid(reason: impl Into<String>) -> GoError {
    GoError::InvalidGoMod { reason: reason.into() }
}

/// The arguments of every `verb` directive, whether on its own line or inside a `verb ( )`
/// block. Only lines are tokenized; nothing is interpreted beyond that.
fn directives(go_mod: &[u8], verb: &str) -> Result<Vec<Vec<String>>, GoError> {
    let text = std::str::from_utf8(go_mod).map_err(|_| invalid("not valid UTF-8"))?;
    let mut out = Vec::new();
    // The verb of the block we are inside, if any.
    let mut block: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let tokens = tokenize(line).map_err(|e| invalid(format!("line {}: {e}", n + 1)))?;
        let Some(first) = tokens.first() else {
            continue;
        };
        if let Some(b) = &block {
            if first.text == ")" && !first.quoted {
                block = None;
            } else if b == verb {
                out.push(tokens.into_iter().map(|t| t.text).collect());
            }
            continue;
        }
        if tokens.len() == 2 && tokens[1].text == "(" && !tokens[1].quoted {
            block = Some(first.text.clone());
            continue;
        }
        if first.text == verb && !first.quoted {
            out.push(tokens.into_iter().skip(1).map(|t| t.text).collect());
        }
    }
    Ok(out)
}

struct Token {
    text: String,
    quoted: bool,
}

/// Splits one line into tokens: `(` and `)`, quoted strings (unquoted), and bare words;
/// stops at a `//` comment.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("//") {
            break;
        }
        let c = rest.chars().next().unwrap_or(' ');
        let (token, len) = match c {
            '(' | ')' => (
                Token {
                    text: c.to_string(),
                    quoted: false,
                },
                1,
            ),
            '"' => {
                let (text, len) = unquote_interpreted(rest)?;
                (Token { text, quoted: true }, len)
            }
            '`' => {
                let end = rest[1..]
                    .find('`')
                    .ok_or_else(|| "unterminated raw string".to_string())?;
                (
                    Token {
                        text: rest[1..1 + end].to_owned(),
                        quoted: true,
                    },
                    end + 2,
                )
            }
            _ => {
                let len = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '"' | '`'))
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                // A comment may start right after a word.
                let word = word.find("//").map_or(word, |i| &word[..i]);
                let len = word.len();
                if len == 0 {
                    break;
                }
                (
                    Token {
                        text: word.to_owned(),
                        quoted: false,
                    },
                    len,
                )
            }
        };
        tokens.push(token);
        rest = rest[len..].trim_start();
    }
    Ok(tokens)
}

/// Decodes a Go interpreted string literal at the start of `s`; returns it and the number of
/// bytes consumed. Handles the escapes that can appear in a module path.
fn unquote_interpreted(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                out.push(match e {
                    '"' => '"',
                    '\\' => '\\',
                    '\'' => '\'',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'v' => '\u{b}',
                    other => return Err(format!("unsupported escape \\{other} in string")),
                });
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn module_directive_forms() {
        for (src, want) in [
            ("module example.com/m\n", Some("example.com/m")),
            ("module example.com/m", Some("example.com/m")),
            ("  module   example.com/m   // the module\n", Some("example.com/m")),
            ("module example.com/m// tight comment\n", Some("example.com/m")),
            (
                "module \"rsc.io/quote\"\n\nrequire \"rsc.io/sampler\" v1.3.0\n",
                Some("rsc.io/quote"),
            ),
            ("module `example.com/raw`\n", Some("example.com/raw")),
            ("module \"example.com/q\\\"x\"\n", Some("example.com/q\"x")),
            ("// module example.com/commented\n", None),
            ("go 1.21\nrequire (\n\tmodule v1.0.0\n)\n", None),
            ("module (\n\texample.com/block\n)\n", Some("example.com/block")),
            ("", None),
            ("\u{feff}go 1.12\n", None),
            ("go 1.21\r\nmodule example.com/crlf\r\n", Some("example.com/crlf")),
            ("modules example.com/m\n", None),
        ] {
            assert_eq!(parse_module_path(src.as_bytes()).unwrap().as_deref(), want, "{src:?}");
            assert_eq!(module_path(src.as_bytes()).as_deref(), want, "{src:?}");
        }
    }

    #[test]
    fn bad_module_directives() {
        for src in [
            "module a.b/c\nmodule a.b/d\n",
            "module\n",
            "module a b\n",
            "module \"unterminated\n",
            "module `unterminated\n",
            "module \"bad\\qescape\"\n",
            "module (\n\ta.b/c\n\ta.b/d\n)\n",
        ] {
            assert!(
                matches!(parse_module_path(src.as_bytes()), Err(GoError::InvalidGoMod { .. })),
                "{src:?}"
            );
            assert_eq!(module_path(src.as_bytes()), None);
        }
        assert!(parse_module_path(b"module \xff\n").is_err());
    }

    #[test]
    fn go_directive_versions() {
        for (src, want) in [
            ("module m\ngo 1.21\n", Some("1.21")),
            ("go 1.21.3\n", Some("1.21.3")),
            ("go 1.21rc1\n", Some("1.21rc1")),
            ("go 1.24.0 // toolchain\n", Some("1.24.0")),
            ("go v1.21\n", None),
            ("go v1.21.0\n", Some("1.21")),
            ("go 1.21-beta\n", Some("1.21")),
            ("go 1\n", None),
            ("go 1.021\n", None),
            ("go 0.1\n", None),
            ("go abc\n", None),
            ("go 1.21 1.22\n", None),
            ("go 1.21\ngo 1.22\n", None),
            ("module m\n", None),
        ] {
            assert_eq!(go_directive(src.as_bytes()).as_deref(), want, "{src:?}");
        }
        assert!(go_version_at_least(b"go 1.24\n", 1, 24));
        assert!(go_version_at_least(b"go 1.24rc1\n", 1, 24));
        assert!(go_version_at_least(b"go 1.100\n", 1, 24));
        assert!(go_version_at_least(b"go 2.0\n", 1, 24));
        assert!(!go_version_at_least(b"go 1.23.9\n", 1, 24));
        assert!(!go_version_at_least(b"module m\n", 1, 24));
    }
}
