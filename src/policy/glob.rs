//! A small glob matcher for policy patterns: `*` (any run of characters, or, with a separator,
//! any run within one segment), `**` (any run, separators included) and `?` (one character).
//! Hand-written so the shim's fast path needs no dependency and allocates nothing (the
//! built-in rules call it dozens of times per command).

/// Matches `text` against `pattern` in full. With `sep = Some('/')`, a single `*` or `?` does
/// not match `/`; `**` does. Works on bytes without allocating; `?` consumes one whole UTF-8
/// character.
pub fn matches(pattern: &str, text: &str, sep: Option<char>) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    let sep = sep.map(|c| u8::try_from(c).expect("separator is ASCII"));
    match_bytes(pattern.as_bytes(), text.as_bytes(), sep)
}

/// Length of the UTF-8 character starting at `t[i]`.
fn char_len(t: &[u8], i: usize) -> usize {
    let mut n = 1;
    while i + n < t.len() && (t[i + n] & 0xC0) == 0x80 {
        n += 1;
    }
    n
}

fn match_bytes(p: &[u8], t: &[u8], sep: Option<u8>) -> bool {
    // Iterative matching with backtracking to the last star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None; // (pattern idx after star, text idx, double)
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            let double = p.get(pi + 1) == Some(&b'*');
            pi += if double { 2 } else { 1 };
            star = Some((pi, ti, double));
            continue;
        }
        if pi < p.len() && p[pi] == b'?' && Some(t[ti]) != sep {
            pi += 1;
            ti += char_len(t, ti);
            continue;
        }
        if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st, double)) if double || Some(t[st]) != sep => {
                let next = st + char_len(t, st);
                pi = sp;
                ti = next;
                star = Some((sp, next, double));
            }
            _ => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        let cases: &[(&str, &str, Option<char>, bool)] = &[
            ("apply", "apply", None, true),
            ("apply", "apply edit-last-applied", None, false),
            ("rollout *", "rollout restart", None, true),
            ("create*", "create", None, true),
            ("create*", "create secret generic", None, true),
            ("", "", None, true),
            ("", "get", None, false),
            ("prod-*", "prod-eu", None, true),
            ("prod-*", "staging", None, false),
            ("*-prod", "eu-prod", None, true),
            ("?b", "ab", None, true),
            ("/srv/*/prod", "/srv/a/prod", Some('/'), true),
            ("/srv/*/prod", "/srv/a/b/prod", Some('/'), false),
            ("/srv/**/prod", "/srv/a/b/prod", Some('/'), true),
            ("/srv/prod/**", "/srv/prod/x/y", Some('/'), true),
            ("/srv/prod/*", "/srv/prod/x/y", Some('/'), false),
            ("a*b*c", "axxbyyc", None, true),
            ("a*b*c", "axxbyy", None, false),
            ("?", "é", None, true),
            ("a?c", "aéc", None, true),
            ("*é", "xxé", None, true),
        ];
        for (p, t, sep, want) in cases {
            assert_eq!(matches(p, t, *sep), *want, "pattern {p:?} text {t:?}");
        }
    }
}
