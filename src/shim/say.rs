//! The shim's own lines on stderr. Every one starts at column 0 with `hitl-gate: `, so an agent
//! that looks for `^hitl-gate:` finds it even right after a tool's coloured output that did not
//! end its last line (terraform's plan ends with `ESC[0m`).
//!
//! The shim tracks where stderr's cursor is: after bytes it copied from a child ([`copied`]) it
//! knows, after a child that wrote to stderr directly ([`unknown`]) it does not, and then starts
//! its next line on a fresh one.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

const AT_LINE_START: u8 = 0;
const MID_LINE: u8 = 1;
const UNKNOWN: u8 = 2;

static CURSOR: AtomicU8 = AtomicU8::new(AT_LINE_START);

/// Prints `hitl-gate: MESSAGE` (each line of a multi-line message gets the prefix) at the
/// start of a line.
pub fn say(message: &str) {
    let mut out = String::new();
    if CURSOR.load(Ordering::SeqCst) != AT_LINE_START {
        out.push('\n');
    }
    for line in message.lines() {
        out.push_str("hitl-gate: ");
        out.push_str(line.strip_prefix("hitl-gate: ").unwrap_or(line));
        out.push('\n');
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
    CURSOR.store(AT_LINE_START, Ordering::SeqCst);
}

/// Prints a line that the next one overwrites (the live countdown on a terminal).
pub fn live(line: &str) {
    let _ = write!(std::io::stderr(), "\r\x1b[2Khitl-gate: {line}");
    CURSOR.store(MID_LINE, Ordering::SeqCst);
}

/// Records that `bytes` were just written to stderr on a child's behalf.
pub fn copied(bytes: &[u8]) {
    if let Some(&last) = bytes.last() {
        let at = if last == b'\n' {
            AT_LINE_START
        } else {
            MID_LINE
        };
        CURSOR.store(at, Ordering::SeqCst);
    }
}

/// Records that a child wrote to stderr directly: where the cursor is, is unknown.
pub fn unknown() {
    CURSOR.store(UNKNOWN, Ordering::SeqCst);
}
