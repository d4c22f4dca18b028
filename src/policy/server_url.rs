//! API server URLs read the way kubectl reads them, and `kube_servers` patterns that match their
//! scheme, host, port and path separately, never the raw string.
//!
//! kubectl (client-go's `rest.DefaultServerURL`, Go's `net/url` and `http.Transport`) splits a
//! server URL at the LAST `@` of the authority: `https://127.0.0.1:6443@127.0.0.2:8443` connects
//! to 127.0.0.2:8443, though the string matches the glob `https://127.0.0.1:*`. [`parse`] gives
//! the host and port kubectl dials, or an `Err` with a one-line reason. An `Err` means "the
//! target is inexact": the caller must never treat it as a match, nor as a refusal of the command.
//! The parser is never looser than kubectl. It refuses, where kubectl would do something else:
//!
//! - a server with no `https://` or `http://` (client-go adds one from TLS settings unseen here),
//!   and any other scheme; the scheme is case-insensitive;
//! - userinfo (any `@` before the path); a query or fragment (`?`, `#`: client-go drops them,
//!   and tools that are not Go split differently); `%`-escapes, backslashes, spaces, control
//!   and non-ASCII characters anywhere (Go maps full-width `１２７.０.０.１` to 127.0.0.1);
//! - a host that is empty, has empty labels or ends in a dot (a rooted name skips the search
//!   domains, and Go's resolver /etc/hosts for `localhost.`: it is not `localhost`); hosts are
//!   lowercased, as resolvers ignore case;
//! - a numeric-looking host that is not a canonical dotted quad (`127.1`, `2130706433`,
//!   `0x7f.0.0.1`, `0177.0.0.1`: Go resolves them as names, glibc as addresses), and the
//!   unspecified addresses `0.0.0.0` and `[::]` (they reach this machine under another name);
//! - IPv6 that is not an address in brackets, has a zone (`%25`), or is IPv4-mapped or
//!   IPv4-compatible (`[::ffff:127.0.0.1]` reaches 127.0.0.1); IPv6 is kept in canonical form;
//! - a port that is empty (`host:`), has a leading zero or is outside 1..=65535; no port means
//!   443 for https and 80 for http, as in `http.Transport`;
//! - a path with empty, `.` or `..` segments, or characters Go would re-escape (client-go joins
//!   and cleans the path, so `/a/../b` is `/b`). One trailing `/` is dropped; `/` alone is the
//!   empty path.
//!
//! A [`ServerPattern`] has the same shape, split the same way, with globs
//! ([`crate::policy::glob::matches`]) in the host, port and path; `?` there is a glob, not a
//! query. The scheme matches exactly. The host glob uses `.` as separator, so
//! `*.dev.example.com` matches `a.dev.example.com` but not `a.b.dev.example.com` (`**` crosses
//! dots); an IPv6 host only matches a literal address in brackets, `[::1]`. The port glob
//! matches the decimal port: a pattern without a port means the scheme's default port, not any
//! port (write `:*` for any). The path glob uses `/` as separator and a pattern without a path
//! matches only the empty path (write `/**` for any non-empty path).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::policy::glob;

/// The two schemes kubectl speaks to an API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port `http.Transport` dials when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An API server URL as kubectl reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub scheme: Scheme,
    /// Lowercased name, canonical dotted-quad IPv4, or canonical IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Empty, or `/seg/seg` without a trailing `/`.
    pub path: String,
}

impl ServerUrl {
    /// `host:port`, IPv6 in brackets: the address kubectl dials.
    pub fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

/// Parses a kubeconfig `server:` value; `Err` is a one-line reason the target is inexact.
pub fn parse(url: &str) -> Result<ServerUrl, String> {
    let parts = split(url, false)?;
    let port = match parts.port {
        None => parts.scheme.default_port(),
        Some(p) => port(p)?,
    };
    Ok(ServerUrl {
        scheme: parts.scheme,
        host: host(&parts, false)?,
        port,
        path: path(parts.path, false)?,
    })
}

/// A `kube_servers` pattern: the same shape as a [`ServerUrl`], with globs in host, port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPattern {
    scheme: Scheme,
    /// A glob over names and IPv4, or a canonical IPv6 address (then `ipv6` is set).
    host: String,
    ipv6: bool,
    /// A glob over the decimal port; the default port when the pattern names none.
    port: String,
    path: String,
}

impl ServerPattern {
    /// Parses a pattern such as `https://*.dev.example.com:6443` or `http://127.0.0.1:*`.
    pub fn parse(pattern: &str) -> Result<ServerPattern, String> {
        let parts = split(pattern, true)?;
        let port = match parts.port {
            None => parts.scheme.default_port().to_string(),
            Some(p) if !p.contains(['*', '?']) => port(p)?.to_string(),
            Some(p) if p.bytes().all(|b| b"0123456789*?".contains(&b)) => p.to_string(),
            Some(p) => return Err(format!("port {p:?} is not digits and globs")),
        };
        Ok(ServerPattern {
            scheme: parts.scheme,
            host: host(&parts, true)?,
            ipv6: parts.bracketed,
            port,
            path: path(parts.path, true)?,
        })
    }

    /// Whether `url` is one of the servers the pattern names.
    pub fn matches(&self, url: &ServerUrl) -> bool {
        let mut buf = [0u8; 5];
        self.scheme == url.scheme
            && self.ipv6 == url.host.contains(':')
            && glob::matches(&self.host, &url.host, Some('.'))
            && glob::matches(&self.port, decimal(url.port, &mut buf), None)
            && glob::matches(&self.path, &url.path, Some('/'))
    }
}

/// A URL or pattern split at its delimiters, the pieces not yet checked.
struct Parts<'a> {
    scheme: Scheme,
    host: &'a str,
    bracketed: bool,
    port: Option<&'a str>,
    path: &'a str,
}

const NO_SCHEME: &str =
    "no scheme (https:// or http://): client-go would pick one from the TLS settings";

/// Splits like Go's `url.Parse`: the scheme up to the first `:`, the authority from `//` to the
/// next `/`, userinfo up to its last `@`, the port after the last `:` (after `]` for IPv6).
fn split(text: &str, pattern: bool) -> Result<Parts<'_>, String> {
    if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "character {c:?} in the server URL (spaces, control characters \
            and non-ASCII are refused)"
        ));
    }
    let delimiters: &[char] = if pattern { &['#'] } else { &['?', '#'] };
    if let Some(i) = text.find(delimiters) {
        return Err(format!(
            "query or fragment {:?} in the server URL",
            &text[i..]
        ));
    }
    if text.contains('\\') {
        return Err("backslash in the server URL".to_string());
    }
    let scheme_char = |b: u8| b.is_ascii_alphanumeric() || b"+-.".contains(&b);
    let (scheme, rest) = match text.split_once(':') {
        Some((s, rest))
            if s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.bytes().all(scheme_char) =>
        {
            (s, rest)
        }
        _ => return Err(NO_SCHEME.to_string()),
    };
    let lower = scheme.to_ascii_lowercase();
    let (scheme, rest) = match (lower.as_str(), rest.strip_prefix("//")) {
        ("https", Some(rest)) => (Scheme::Https, rest),
        ("http", Some(rest)) => (Scheme::Http, rest),
        (_, None) => return Err(NO_SCHEME.to_string()),
        _ => return Err(format!("scheme {scheme:?} is neither https nor http")),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if let Some(i) = authority.rfind('@') {
        let host = &authority[i + 1..];
        return Err(format!(
            "userinfo (text before \"@\") in the server URL: kubectl would \
            connect to the host after the last @, {host:?}"
        ));
    }
    let (host, bracketed, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some(end) = inner.rfind(']') else {
            return Err("missing \"]\" after an IPv6 host".to_string());
        };
        match &inner[end + 1..] {
            "" => (&inner[..end], true, None),
            after => match after.strip_prefix(':') {
                Some(p) => (&inner[..end], true, Some(p)),
                None => return Err(format!("{after:?} after an IPv6 host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!("two colons in {authority:?} (IPv6 needs brackets)"))
            }
            Some((h, p)) => (h, false, Some(p)),
            None => (authority, false, None),
        }
    };
    if port == Some("") {
        return Err("empty port after \":\"".to_string());
    }
    Ok(Parts {
        scheme,
        host,
        bracketed,
        port,
        path,
    })
}

/// The host: canonical IPv6, or a lowercased name (globs allowed in a pattern) that, when its
/// last label is a number (decimal or `0x` hex), must be a canonical dotted-quad IPv4 address.
fn host(parts: &Parts<'_>, pattern: bool) -> Result<String, String> {
    let host = parts.host;
    if parts.bracketed {
        if host.contains('%') {
            return Err(format!("IPv6 zone in [{host}]"));
        }
        let addr: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("[{host}] is not an IPv6 address"))?;
        if addr.is_unspecified() {
            return Err("unspecified address [::]: it reaches this machine".to_string());
        }
        if addr.to_ipv4_mapped().is_some() || addr.segments()[..6] == [0; 6] && !addr.is_loopback()
        {
            return Err(format!("IPv4-mapped or IPv4-compatible address [{host}]"));
        }
        return Ok(addr.to_string());
    }
    if host.is_empty() {
        return Err("empty host".to_string());
    }
    if host.ends_with('.') {
        return Err(format!(
            "trailing dot in {host:?}: resolvers read a rooted name differently \
            (no search domains; Go skips /etc/hosts for one-label names)"
        ));
    }
    let host = host.to_ascii_lowercase();
    let ok =
        |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c) || pattern && "*?".contains(c);
    if let Some(c) = host.chars().find(|&c| !ok(c)) {
        return Err(format!("character {c:?} in the host {host:?}"));
    }
    if host.len() > 253 || host.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!("empty or overlong label in the host {host:?}"));
    }
    let last = host.rsplit('.').next().unwrap_or_default();
    let hex = |h: &str| h.bytes().all(|b| b.is_ascii_hexdigit());
    if last.bytes().all(|b| b.is_ascii_digit()) || last.strip_prefix("0x").is_some_and(hex) {
        match host.parse::<Ipv4Addr>() {
            Ok(a) if !a.is_unspecified() => {}
            Ok(_) => return Err("unspecified address 0.0.0.0: it reaches this machine".to_string()),
            Err(_) => {
                return Err(format!(
                    "{host:?} is numeric but not a dotted-quad IPv4 address"
                ))
            }
        }
    }
    Ok(host)
}

fn port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0') => Ok(n),
        _ => Err(format!(
            "port {p:?} is not a number in 1..=65535 without leading zeros"
        )),
    }
}

/// The path client-go prefixes to API paths, or an error when it would clean or re-escape it.
fn path(p: &str, pattern: bool) -> Result<String, String> {
    let p = p.strip_suffix('/').unwrap_or(p);
    let ok = |c: char| {
        c.is_ascii_alphanumeric() || "-_.~$&+,:;=@".contains(c) || pattern && "*?".contains(c)
    };
    for seg in p.split('/').skip(1) {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "empty, \".\" or \"..\" segment in the path {p:?}: client-go cleans it"
            ));
        }
        if let Some(c) = seg.chars().find(|&c| !ok(c)) {
            return Err(format!("character {c:?} in the path {p:?}"));
        }
    }
    Ok(p.to_string())
}

/// `n` in decimal, without allocating.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd URLs and their canonical reading.
    #[rustfmt::skip]
    const GOOD: &[(&str, &str)] = &[
        ("https://dev.k8s.example.com:6443", "https://dev.k8s.example.com:6443"),
        ("HTTPS://Dev.K8S.Example.COM", "https://dev.k8s.example.com:443"),
        ("http://127.0.0.1", "http://127.0.0.1:80"),
        ("https://127.0.0.1/", "https://127.0.0.1:443"),
        ("https://[::1]", "https://[::1]:443"),
        ("https://[0:0:0:0:0:0:0:1]:6443/", "https://[::1]:6443"),
        ("https://[FD00::A]:1", "https://[fd00::a]:1"),
        ("https://h:65535/k8s/clusters/c-1/", "https://h:65535/k8s/clusters/c-1"),
        ("https://h/s/https:k:443/proxy", "https://h:443/s/https:k:443/proxy"),
        ("http://127.0.0.2:8080/@127.0.0.1:6443", "http://127.0.0.2:8080/@127.0.0.1:6443"),
        ("https://under_score.example", "https://under_score.example:443"),
    ];

    /// Odd URLs and a word of the reason each is refused.
    #[rustfmt::skip]
    const BAD: &[(&str, &str)] = &[
        ("https://127.0.0.1:6443@127.0.0.2:8443", "\"127.0.0.2:8443\""),
        ("https://a@b@h", "userinfo"), ("https://user:pw@h", "userinfo"),
        ("https://h:6443\\@evil", "backslash"), ("https://h#@evil", "fragment"),
        ("https://h?x=1", "query"), ("https://h?", "query"),
        ("127.0.0.1:6443", "no scheme"), ("localhost:6443", "no scheme"), ("ftp:h", "no scheme"),
        ("dev.example.com", "no scheme"), ("//h", "no scheme"), ("", "no scheme"),
        ("https:h", "no scheme"), ("ftp://h", "neither"),
        ("https:///h", "empty host"), ("https://", "empty host"), ("https://:6443", "empty host"),
        ("https://h:", "empty port"), ("https://h:0", "port"), ("https://h:65536", "port"),
        ("https://h:06443", "port"), ("https://h:+443", "port"),
        ("https://h:1:2", "two colons"), ("https://::1", "two colons"),
        ("https://[::1", "missing"), ("https://[::1]x", "after an IPv6"),
        ("https://[::1%25lo]", "zone"), ("https://[127.0.0.1]", "not an IPv6"),
        ("https://[::]", "unspecified"), ("https://0.0.0.0", "unspecified"),
        ("https://[::ffff:127.0.0.1]", "IPv4-mapped"), ("https://[::127.0.0.1]", "IPv4-compatible"),
        ("https://127.1", "dotted-quad"), ("https://2130706433", "dotted-quad"),
        ("https://0x7f.0.0.1", "dotted-quad"), ("https://0177.0.0.1", "dotted-quad"),
        ("https://127.000.000.001", "dotted-quad"), ("https://1.2.3.4.5", "dotted-quad"),
        ("https://example.0x1f", "dotted-quad"),
        ("https://127.0.0.1.", "trailing dot"), ("https://localhost.", "trailing dot"),
        ("https://a..b", "label"), ("https://.a", "label"),
        ("https://127%2e0.0.1", "'%'"), ("https://h%C3%A9", "'%'"),
        ("https://１２７.０.０.１", "non-ASCII"), (" https://h", "' '"), ("https://h ", "' '"),
        ("https://h\t", "'\\t'"), ("https://a*b", "'*'"),
        ("https://h//", "segment"), ("https://h/a/../b", "segment"), ("https://h/a/./b", "segment"),
        ("https://h/%2e%2e/", "'%'"), ("https://h/a!b", "'!'"),
    ];

    /// Pattern, URL, whether it matches.
    #[rustfmt::skip]
    const MATCHES: &[(&str, &str, bool)] = &[
        ("https://127.0.0.1:*", "https://127.0.0.1:6443", true),
        ("https://127.0.0.1:*", "https://127.0.0.1:6443@127.0.0.2:8443", false),
        ("https://127.0.0.1:*", "https://127.0.0.2:6443", false),
        ("https://127.0.0.1:*", "http://127.0.0.1:6443", false),
        ("https://127.0.0.*:64*", "https://127.0.0.9:6443", true),
        ("https://dev.example.com", "https://DEV.Example.com", true),
        ("https://dev.example.com", "https://dev.example.com:443/", true),
        ("https://dev.example.com", "https://dev.example.com.", false),
        ("https://dev.example.com", "https://dev.example.com:6443", false),
        ("https://dev.example.com", "https://dev.example.com/k8s", false),
        ("http://dev.example.com", "http://dev.example.com:80", true),
        ("https://Dev.Example.com:6443", "https://dev.example.com:6443", true),
        ("https://*.dev.example.com", "https://a.dev.example.com", true),
        ("https://*.dev.example.com", "https://a.b.dev.example.com", false),
        ("https://**.dev.example.com", "https://a.b.dev.example.com", true),
        ("https://*.dev.example.com", "https://dev.example.com", false),
        ("https://*", "https://localhost", true),
        ("https://*", "https://[::1]", false),
        ("https://**:*", "https://[::1]:6443", false),
        ("https://[::1]", "https://[0::1]", true),
        ("https://[::1]:*", "https://[::1]:6443", true),
        ("https://[::1]", "https://[::1]:6443", false),
        ("https://h:6443/k8s/clusters/*", "https://h:6443/k8s/clusters/c-1", true),
        ("https://h:6443/k8s/clusters/*", "https://h:6443/k8s/clusters/c-1/x", false),
        ("https://h:6443/**", "https://h:6443/a/b", true),
        ("https://h:6443/**", "https://h:6443/", false),
        ("https://h:6443/", "https://h:6443", true),
        ("https://h:6443/c-?", "https://h:6443/c-1", true),
        ("https://h?x:6443", "https://hax:6443", true),
    ];

    #[rustfmt::skip]
    const BAD_PATTERNS: &[&str] = &[
        "https://user@h", "https://h.", "https://127.1", "https://h:06443", "https://h:6x",
        "https://[::*]", "*://h", "https://h#x", "h:6443", "https://h/a/../b", "https://0.0.0.0",
    ];

    #[test]
    fn urls() {
        for (url, want) in GOOD {
            let got = parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
            assert_eq!(&got.to_string(), want, "{url:?}");
        }
        assert_eq!(
            parse("https://[::1]:6443").unwrap().authority(),
            "[::1]:6443"
        );
        assert_eq!(parse("http://h").unwrap().authority(), "h:80");
        for (url, want) in BAD {
            let err = parse(url).map(|u| u.to_string()).expect_err(url);
            assert!(err.contains(want), "{url:?}: {err:?} lacks {want:?}");
            assert!(!err.contains('\n'), "{url:?}: {err:?}");
        }
        // The password never appears in the reason (it may reach the audit log).
        assert!(!parse("https://u:secret@h").unwrap_err().contains("secret"));
    }

    #[test]
    fn patterns() {
        for (pattern, url, want) in MATCHES {
            let p = ServerPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
            let got = parse(url).is_ok_and(|u| p.matches(&u));
            assert_eq!(got, *want, "{pattern:?} against {url:?}");
        }
        for bad in BAD_PATTERNS {
            assert!(ServerPattern::parse(bad).is_err(), "{bad:?}");
        }
        let mut buf = [0u8; 5];
        for n in [0u16, 1, 9, 10, 443, 6443, 65535] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }
}
