//! Showing text an agent supplied (argv, diffs, reasons, names) without letting it act on the
//! terminal or the reader: control characters (C0 but newline and tab in multi-line text, DEL,
//! C1, and so ESC and every terminal escape sequence), bidirectional overrides and isolates,
//! line and paragraph separators and zero-width characters are shown as `\u{…}`. Printable
//! text, quotes included, stays as it is.

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
}
