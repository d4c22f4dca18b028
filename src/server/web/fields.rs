//! The change, field by field, as the request page shows it: per resource one row per changed
//! field (before and after, the changed words marked), the key fields of what a delete removes,
//! and the tool's own text diff with the changed words of each changed line marked.
//!
//! Words are runs of letters and digits, and each other character on its own, so
//! `nginx:1.25.3 → nginx:1.26.0` marks `25` and `3`, not the whole image. Everything shown
//! comes from the agent's shim: it is made visible (`html::shown`) before any comparison, and
//! maud escapes it.

use maud::{html, Markup};
use serde_json::Value;
use similar::{capture_diff_slices_deadline, Algorithm, DiffTag};

use super::html::{shown, shown_lines};

/// Lines longer than this are not compared word by word (the cost grows with their product).
const MAX_WORDS_LINE: usize = 2000;
/// At most this many characters of one text diff are compared word by word (a diff may hold
/// 4 MiB, and the page is drawn on every view); the lines after them are shown unmarked.
const MARK_BUDGET: usize = 256 * 1024;
/// The longest one comparison may take; the rest of its line is then marked as a whole.
const MARK_DEADLINE: std::time::Duration = std::time::Duration::from_millis(20);

/// `s` cut into words: runs of letters and digits, runs of spaces, and single other characters.
pub fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            0
        } else if c.is_whitespace() {
            1
        } else {
            2
        }
    };
    let mut prev: Option<u8> = None;
    for (i, c) in s.char_indices() {
        let k = class(c);
        if prev.is_some_and(|p| p != k || k == 2) {
            out.push(&s[start..i]);
            start = i;
        }
        prev = Some(k);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The two sides of a changed value with their changed words marked (`del` on the old side,
/// `ins` on the new).
pub fn marked(old: &str, new: &str) -> (Markup, Markup) {
    if old.len() + new.len() > MAX_WORDS_LINE {
        return (html! { (old) }, html! { (new) });
    }
    let (a, b) = (words(old), words(new));
    let deadline = std::time::Instant::now() + MARK_DEADLINE;
    let ops = capture_diff_slices_deadline(Algorithm::Myers, &a, &b, Some(deadline));
    let part = |ws: &[&str]| ws.concat();
    let left = html! {
        @for op in &ops {
            @let (tag, r, _) = op.as_tag_tuple();
            @match tag {
                DiffTag::Equal => (part(&a[r])),
                DiffTag::Delete | DiffTag::Replace => del { (part(&a[r])) },
                DiffTag::Insert => {}
            }
        }
    };
    let right = html! {
        @for op in &ops {
            @let (tag, _, r) = op.as_tag_tuple();
            @match tag {
                DiffTag::Equal => (part(&b[r])),
                DiffTag::Insert | DiffTag::Replace => ins { (part(&b[r])) },
                DiffTag::Delete => {}
            }
        }
    };
    (left, right)
}

/// One resource of the change model: its action and address, and its fields.
pub fn resource(r: &Value) -> Markup {
    let action = r["action"]
        .as_str()
        .map_or_else(|| r["action"].to_string(), String::from);
    let attrs = r["attributes"].as_array().cloned().unwrap_or_default();
    html! {
        details.resource open {
            summary {
                span class={ "action action-" (shown(&action)) } { (shown(&action)) }
                " " code { (shown(r["address"].as_str().unwrap_or("?"))) }
                @if let Some(why) = r["action_reason"].as_str() { " " span.why { "(" (shown(why)) ")" } }
            }
            @if !attrs.is_empty() {
                @match action.as_str() {
                    "delete" => (one_side(&attrs, "before", "What is deleted (its key fields as they are now)")),
                    "create" => (one_side(&attrs, "after", "What is created")),
                    _ => (both_sides(&attrs)),
                }
            }
        }
    }
}

/// A field's path and one value, for objects created or deleted.
fn one_side(attrs: &[Value], side: &str, caption: &str) -> Markup {
    html! {
        table.attrs {
            caption { (caption) }
            thead { tr { th scope="col" { "field" } th scope="col" { "value" } } }
            tbody {
                @for a in attrs {
                    tr {
                        th scope="row" { code { (shown(a["path"].as_str().unwrap_or(""))) } }
                        td { (shown(a[side].as_str().unwrap_or("—"))) }
                    }
                }
            }
        }
    }
}

/// One row per changed field, before and after, the changed words marked. The copy of the
/// whole object in the last-applied annotation is left to the text diff below.
fn both_sides(attrs: &[Value]) -> Markup {
    let last_applied = crate::diff::kube::LAST_APPLIED;
    let (shown_attrs, hidden): (Vec<&Value>, Vec<&Value>) = attrs
        .iter()
        .partition(|a| !a["path"].as_str().unwrap_or("").contains(last_applied));
    html! {
        table.attrs {
            caption { "Changed fields" }
            thead { tr { th scope="col" { "field" } th scope="col" { "before" } th scope="col" { "after" } } }
            tbody {
                @for a in shown_attrs {
                    @let before = shown(a["before"].as_str().unwrap_or("—"));
                    @let after = shown(a["after"].as_str().unwrap_or("—"));
                    @let (old, new) = marked(&before, &after);
                    tr {
                        th scope="row" { code { (shown(a["path"].as_str().unwrap_or(""))) } }
                        td.before { (old) }
                        td.after { (new) }
                    }
                }
            }
        }
        @if !hidden.is_empty() {
            p.why { "The " code { (last_applied) } " annotation changes with them (it copies the whole object)." }
        }
    }
}

/// How a line of the tool's text diff is coloured, by its first character: `+` added, `-`
/// removed, `~` or `!` changed; `---`, `+++` and `@@` are headers.
fn class(line: &str) -> &'static str {
    let t = line.trim_start();
    if t.starts_with("---") || t.starts_with("+++") || t.starts_with("@@") {
        "hdr"
    } else if t.starts_with("-/+")
        || t.starts_with("+/-")
        || t.starts_with('~')
        || t.starts_with('!')
    {
        "chg"
    } else if t.starts_with('+') {
        "add"
    } else if t.starts_with('-') {
        "del"
    } else {
        "ctx"
    }
}

/// The tool's text, escaped and made visible, coloured line by line; where removed lines are
/// followed by as many added ones (a changed block of a unified diff), each pair has its
/// changed words marked.
pub fn diff_lines(text: &str) -> Markup {
    let text = shown_lines(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut pairs: Vec<Option<usize>> = vec![None; lines.len()];
    let (mut i, mut budget) = (0, MARK_BUDGET);
    while i < lines.len() {
        let dels = lines[i..].iter().take_while(|l| class(l) == "del").count();
        let adds = lines[i + dels..]
            .iter()
            .take_while(|l| class(l) == "add")
            .count();
        let size: usize = lines[i..i + dels + adds].iter().map(|l| l.len()).sum();
        if dels > 0 && dels == adds && size <= budget {
            budget -= size;
            for k in 0..dels {
                pairs[i + k] = Some(i + dels + k);
                pairs[i + dels + k] = Some(i + k);
            }
        }
        i += (dels + adds).max(1);
    }
    html! {
        @for (n, line) in lines.iter().enumerate() {
            @let c = class(line);
            @match pairs[n] {
                Some(other) => {
                    @let (mark, rest) = marker(line);
                    @let (_, other) = marker(lines[other]);
                    @let (old, new) = if c == "del" { marked(rest, other) } else { marked(other, rest) };
                    span class=(c) { (mark) @if c == "del" { (old) } @else { (new) } }
                }
                None => span class=(c) { (line) },
            }
        }
    }
}

/// A diff line's leading `-` or `+` (with the indent before it), and the rest.
fn marker(line: &str) -> (&str, &str) {
    let at = line.len() - line.trim_start().len();
    let end = at + line[at..].chars().next().map_or(0, char::len_utf8);
    line.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_at_punctuation() {
        assert_eq!(
            words("nginx:1.25.3 x"),
            ["nginx", ":", "1", ".", "25", ".", "3", " ", "x"]
        );
        assert_eq!(words(""), Vec::<&str>::new());
    }

    #[test]
    fn only_the_changed_words_are_marked() {
        let (old, new) = marked("\"nginx:1.25.3\"", "\"nginx:1.26.0\"");
        assert_eq!(
            old.into_string(),
            "&quot;nginx:1.<del>25</del>.<del>3</del>&quot;"
        );
        assert_eq!(
            new.into_string(),
            "&quot;nginx:1.<ins>26</ins>.<ins>0</ins>&quot;"
        );
    }

    #[test]
    fn a_changed_line_pair_of_a_unified_diff_is_marked_and_text_stays_escaped() {
        let html = diff_lines(
            "--- before x\n+++ after x\n@@ -1,2 +1,2 @@\n-  image: nginx:1.25\n+  image: nginx:1.26\n   a: <b>\n",
        )
        .into_string();
        assert!(
            html.contains("<span class=\"del\">-  image: nginx:1.<del>25</del>\n</span>"),
            "{html}"
        );
        assert!(html.contains("nginx:1.<ins>26</ins>"), "{html}");
        assert!(html.contains("a: &lt;b&gt;"), "{html}");
    }

    #[test]
    fn a_huge_diff_is_marked_only_up_to_its_budget() {
        let pair = "-  image: nginx:1.25\n+  image: nginx:1.26\n";
        let n = MARK_BUDGET / pair.len() + 50;
        let html = diff_lines(&pair.repeat(n)).into_string();
        let marked = html.matches("<ins>26</ins>").count();
        assert!(marked > 0 && marked < n, "{marked} of {n} pairs marked");
        assert_eq!(marked, MARK_BUDGET / pair.len());
        // Every line is still shown.
        assert_eq!(html.matches("image: nginx:1.").count(), 2 * n);
    }
}
