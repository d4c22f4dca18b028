//! Durations in the policy file: `500ms`, `30s`, `15m`, `2h` (one number, one unit).

use serde::Deserialize;

/// A duration written as `500ms`, `30s`, `15m` or `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Duration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `500ms`, `30s`, `15m`, `2h` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (write 500ms, 30s, 15m or 2h)"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => {
            return Err(format!(
                "{s:?} is not a duration (write 500ms, 30s, 15m or 2h)"
            ))
        }
    };
    Ok(std::time::Duration::from_millis(ms))
}
