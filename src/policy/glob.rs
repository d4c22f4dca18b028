//! A small glob matcher for policy patterns: `*` (any run of characters, or, with a separator,
//! any run within one segment), `**` (any run, separators included) and `?` (one character).
//! Hand-written so the shim's fast path needs no dependency and allocates nothing.

/// Matches `text` against `pattern` in full. With `sep = Some('/')`, a single `*` or `?` does
/// not match `/`; `**` does.
pub fn matches(pattern: &str, text: &str, sep: Option<char>) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    match_from(&p, &t, sep)
}

fn match_from(p: &[char], t: &[char], sep: Option<char>) -> bool {
    // Iterative matching with backtracking to the last star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None; // (pattern idx after star, text idx, double)
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            let double = p.get(pi + 1) == Some(&'*');
            pi += if double { 2 } else { 1 };
            star = Some((pi, ti, double));
            continue;
        }
        if pi < p.len() && (p[pi] == t[ti] || (p[pi] == '?' && Some(t[ti]) != sep)) {
            pi += 1;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st, double)) if double || Some(t[st]) != sep => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1, double));
            }
            _ => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
        ];
        for (p, t, sep, want) in cases {
            assert_eq!(matches(p, t, *sep), *want, "pattern {p:?} text {t:?}");
        }
    }
}
