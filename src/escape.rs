//! Showing text an agent supplied (argv, diffs, reasons, names) without letting it act on the
//! terminal or the reader: control characters (C0 but newline and tab in multi-line text, DEL,
//! C1, and so ESC and every terminal escape sequence), bidirectional overrides and isolates,
//! line and paragraph separators and zero-width characters are shown as `\u{…}`. Printable
//! text, quotes included, stays as it is. [`json_line`] writes JSON whose strings hold none of
//! them either: each is a JSON `\uXXXX` escape, which parses back to the same character.

/// `s` made safe to print. With `multiline`, newlines and tabs are kept (a diff is many lines);
/// without, they are escaped too (an argument, a name).
pub fn terminal(s: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (multiline && (c == '\n' || c == '\t')) || !hidden(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

/// True for characters that act on a terminal or reorder or hide text.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `v` as one line of compact JSON in which every character [`terminal`] would escape is a JSON
/// `\uXXXX` escape: the text parses back to exactly the same strings (so an audit export's
/// hashes still verify), yet a terminal, pager or editor showing the raw line obeys none of them.
pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(256);
    v.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        HiddenEscaped,
    ))?;
    // Only whole UTF-8 characters and ASCII escapes were written.
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// serde_json's compact format, with [`hidden`] characters escaped inside strings. serde_json
/// itself escapes `"`, `\` and C0 controls and hands everything else here.
struct HiddenEscaped;

impl serde_json::ser::Formatter for HiddenEscaped {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices().filter(|(_, c)| hidden(*c)) {
            w.write_all(&fragment.as_bytes()[start..i])?;
            for unit in c.encode_utf16(&mut [0; 2]) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// One argument as a shell would need it written: bare when it is plain, else single-quoted;
/// then made safe to print.
pub fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_alphanumeric() || "-_=./:,@%+".contains(c));
    let quoted = if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    };
    terminal(&quoted, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_escapes_and_bidi_are_shown_not_obeyed() {
        assert_eq!(terminal("a\rb\x1b[2Kc", false), "a\\u{d}b\\u{1b}[2Kc");
        assert_eq!(
            terminal("x\u{202e}y\u{2066}z\u{9b}", false),
            "x\\u{202e}y\\u{2066}z\\u{9b}"
        );
        assert_eq!(terminal("l1\n\tl2\r\n", true), "l1\n\tl2\\u{d}\n");
        assert_eq!(terminal("l1\nl2", false), "l1\\u{a}l2");
        // Printable text, quotes included, is verbatim.
        assert_eq!(terminal("say \"hi\" it's ü", false), "say \"hi\" it's ü");
        assert_eq!(shell_word("deploy/web"), "deploy/web");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("\x1b[31m"), "'\\u{1b}[31m'");
    }

    #[test]
    fn json_lines_escape_what_terminal_escapes_and_parse_back_unchanged() {
        let s = "a\u{202e}b\u{2066}c\u{200b}d\u{feff}e\u{2028}f\u{85}g\u{7f}h\n\"ü😀";
        let line = json_line(&serde_json::json!({ "k\u{200f}": [s] })).unwrap();
        assert_eq!(
            line,
            r#"{"k\u200f":["a\u202eb\u2066c\u200bd\ufeffe\u2028f\u0085g\u007fh\n\"ü😀"]}"#
        );
        assert!(line.chars().all(|c| !hidden(c)));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, serde_json::json!({ "k\u{200f}": [s] }));
    }
}
