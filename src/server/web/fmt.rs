//! Text for people, the same on every page: durations (`15 min`, not `900 s`), the time left
//! before a deadline, times in UTC (the page's script shows them in the browser's own time
//! zone, with UTC kept in a tooltip), and text cut to fit: at its end, or in its middle so the
//! tail of a long command (an image tag, a release name) stays visible.

/// A duration for people: `850 ms`, `45 s`, `15 min`, `1 h 5 min`, `2 days 3 h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, 0, _) => "1 day".into(),
        (1, h, _) => format!("1 day {h} h"),
        (d, 0, _) => format!("{d} days"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

/// The time left before `deadline`, as the page's script counts it down too: `1 h 5 min
/// left`, `14 min left`, in the last ten minutes `4 min 05 s left`, then `42 s left`; past it,
/// `expired`.
pub fn time_left(deadline: i64, now: i64) -> String {
    let ms = deadline - now;
    if ms <= 0 {
        return "expired".into();
    }
    let s = ms / 1000;
    if s >= 600 {
        // Whole minutes, rounded down, as a clock shows them.
        format!("{} left", duration(s / 60 * 60_000))
    } else if s >= 60 {
        format!("{} min {:02} s left", s / 60, s % 60)
    } else {
        format!("{s} s left")
    }
}

/// A unix-ms time as `2026-11-30 10:22:13 UTC`.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A unix-ms time as RFC 3339 (`2026-11-30T10:22:13Z`), for `<time datetime>`.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// At most `n` characters of `s`, with an ellipsis when cut.
pub fn short(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// At most about `n` characters of `s`: cut in the middle when longer, so both ends stay (the
/// tool and subcommand, and the last arguments).
pub fn middle(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return s.to_string();
    }
    let head = n * 2 / 5;
    let tail = n.saturating_sub(head + 1);
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        for (ms, want) in [
            (0, "0 ms"),
            (850, "850 ms"),
            (45_000, "45 s"),
            (900_000, "15 min"),
            (3_600_000, "1 h"),
            (3_900_000, "1 h 5 min"),
            (86_400_000, "1 day"),
            (2 * 86_400_000 + 3 * 3_600_000, "2 days 3 h"),
        ] {
            assert_eq!(duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn the_time_left_gets_finer_near_the_end() {
        let now = 1_000_000;
        assert_eq!(time_left(now + 15 * 60_000, now), "15 min left");
        assert_eq!(time_left(now + 14 * 60_000 + 59_000, now), "14 min left");
        assert_eq!(time_left(now + 65 * 60_000, now), "1 h 5 min left");
        assert_eq!(time_left(now + 4 * 60_000 + 5_000, now), "4 min 05 s left");
        assert_eq!(time_left(now + 42_000, now), "42 s left");
        assert_eq!(time_left(now, now), "expired");
    }

    #[test]
    fn a_long_command_keeps_its_tail() {
        let cmd = format!(
            "helm upgrade web ./chart {} --set image.tag=1.26.0",
            "--set a=b ".repeat(20)
        );
        let cut = middle(&cmd, 60);
        assert!(cut.starts_with("helm upgrade web"), "{cut}");
        assert!(cut.ends_with("--set image.tag=1.26.0"), "{cut}");
        assert!(cut.contains('…') && cut.chars().count() == 60, "{cut}");
        assert_eq!(middle("short", 60), "short");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
