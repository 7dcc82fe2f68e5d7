//! Building HTML by hand, safely: every value that did not come from this module's own
//! literals passes through [`esc`] (text and quoted attribute values alike), and URLs are
//! built from percent-encoded segments by [`href`], so a name, a path, metadata or a tag can
//! never open an element, an attribute or a `javascript:` link.

use std::fmt::Write;

/// `s` escaped for HTML text and for attribute values in double quotes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters kept as they are in a URL path segment or query value: RFC 3986's unreserved
/// set. Everything else (`/`, `?`, `#`, `&`, quotes, `<`) is percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One URL path segment (or query value), percent-encoded.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A `/`-separated path (a name, a file path), each segment percent-encoded, the slashes kept.
pub fn path(s: &str) -> String {
    s.split('/').map(seg).collect::<Vec<_>>().join("/")
}

/// `<a href="url">text</a>`: `url` must have been built from [`seg`]/[`path`] pieces (it is
/// escaped again for the attribute), `text` is escaped here.
pub fn link(url: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(url), esc(text))
}

/// A byte count as people read it (`1.5 MiB`), exact below 1 KiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A timestamp as a `<time>` element: machine-readable in the attribute, readable as text.
pub fn time(t: intact_core::Timestamp) -> String {
    let full = t.to_rfc3339_seconds();
    let shown = full.replacen('T', " ", 1).replacen('Z', " UTC", 1);
    format!("<time datetime=\"{}\">{}</time>", esc(&full), esc(&shown))
}

/// A table with a caption and column headers; each row's cells are HTML already (built with
/// [`esc`]/[`link`]).
pub fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<div class=\"scroll\"><table><caption>{}</caption><thead><tr>",
        esc(caption)
    );
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("plain-name_1.0"), "plain-name_1.0");
        assert_eq!(esc("ünïcode"), "ünïcode");
    }

    #[test]
    fn url_pieces_cannot_leave_their_segment() {
        assert_eq!(seg("a/b?c#d&e f\"<"), "a%2Fb%3Fc%23d%26e%20f%22%3C");
        assert_eq!(path("dir/sub dir/f.txt"), "dir/sub%20dir/f.txt");
        assert_eq!(seg("javascript:alert(1)"), "javascript%3Aalert%281%29");
        assert_eq!(
            link("/ui/repos/a\"b", "<b>"),
            "<a href=\"/ui/repos/a&quot;b\">&lt;b&gt;</a>"
        );
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn tables_escape_their_caption_and_headers() {
        let t = table("<x>", &["a<b"], &[vec!["cell".into()]]);
        assert!(t.contains("<caption>&lt;x&gt;</caption>"), "{t}");
        assert!(t.contains("<th scope=\"col\">a&lt;b</th>"), "{t}");
        assert!(t.contains("<td>cell</td>"), "{t}");
    }
}
