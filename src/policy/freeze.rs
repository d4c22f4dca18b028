//! Change freezes (`[[freeze]]`): a fixed window (`start`, `end`, RFC 3339 with an offset) or a
//! weekly one (`weekly = { from = "fri 18:00", to = "mon 08:00", zone = "Europe/Berlin" }`,
//! which may wrap over the week's end), the environments it covers, its reason, and how many
//! distinct approvers break it (`freeze_approvals`; without it, gated requests are rejected at
//! once). The server applies them; `hitl-gate explain` shows the one in force.
//!
//! Times are evaluated with the time zone database built into the binary (jiff's bundled
//! tzdb), so a container without `/usr/share/zoneinfo` reads zones the same way.

use serde::Deserialize;

/// `[[freeze]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    /// Shown to the agent and approvers, and in the audit log (`policy:freeze:<name>`).
    pub name: String,
    /// Why: what the agent reads when its request is rejected.
    pub reason: String,
    /// Environment names it covers. Empty: every gated request, with or without one.
    #[serde(default)]
    pub environments: Vec<String>,
    /// A fixed window: from `start` (inclusive) to `end` (exclusive), RFC 3339 with an offset
    /// (`2026-12-20T00:00:00+01:00`).
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// A window every week.
    #[serde(default)]
    pub weekly: Option<Weekly>,
    /// When set, a request the freeze covers is not rejected: it needs this many distinct
    /// approvers (break-glass), or the rule's own count if that is higher.
    #[serde(default)]
    pub freeze_approvals: Option<u32>,
}

/// `weekly = { from = "fri 18:00", to = "mon 08:00", zone = "Europe/Berlin" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    /// Day (`mon` … `sun`) and time (`HH:MM`, 24-hour) the window opens.
    pub from: String,
    /// Day and time it closes (exclusive). Before `from` in the week means it wraps.
    pub to: String,
    /// An IANA time zone name (`Europe/Berlin`, `UTC`).
    pub zone: String,
}

/// A freeze's window, parsed.
enum Window {
    Fixed {
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    },
    Weekly {
        from: u32,
        to: u32,
        zone: jiff::tz::TimeZone,
    },
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `fri 18:00` as minutes since Monday 00:00.
fn week_minute(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a day and time (write \"fri 18:00\")");
    let (day, time) = s.trim().split_once(' ').ok_or_else(bad)?;
    let d = DAYS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(day.trim()))
        .ok_or_else(bad)?;
    let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || time.trim().len() != 5 {
        return Err(bad());
    }
    Ok(u32::try_from(d).unwrap_or(0) * 1440 + h * 60 + m)
}

impl Freeze {
    fn window(&self) -> Result<Window, String> {
        let time = |v: &Option<String>, what: &str| -> Result<jiff::Timestamp, String> {
            let v = v.as_deref().ok_or_else(|| format!("needs `{what}`"))?;
            v.parse::<jiff::Timestamp>()
                .map_err(|e| format!("{what} = {v:?} is not an RFC 3339 time with an offset ({e})"))
        };
        match (&self.weekly, self.start.is_some() || self.end.is_some()) {
            (Some(w), false) => {
                let (from, to) = (week_minute(&w.from)?, week_minute(&w.to)?);
                if from == to {
                    return Err("weekly.from and weekly.to are the same time".into());
                }
                let zone = jiff::tz::TimeZone::get(&w.zone)
                    .map_err(|e| format!("weekly.zone = {:?}: {e}", w.zone))?;
                Ok(Window::Weekly { from, to, zone })
            }
            (None, true) => {
                let (start, end) = (time(&self.start, "start")?, time(&self.end, "end")?);
                if end <= start {
                    return Err("end is not after start".into());
                }
                Ok(Window::Fixed { start, end })
            }
            (Some(_), true) => Err("has both a fixed window (start, end) and weekly".into()),
            (None, false) => Err("needs start and end, or weekly".into()),
        }
    }

    /// Whether the freeze is in force at `now_ms` (unix milliseconds).
    pub fn active_at(&self, now_ms: i64) -> bool {
        let Ok(now) = jiff::Timestamp::from_millisecond(now_ms) else {
            return false;
        };
        match self.window() {
            Ok(Window::Fixed { start, end }) => start <= now && now < end,
            Ok(Window::Weekly { from, to, zone }) => {
                let z = now.to_zoned(zone);
                let day = u32::from(z.weekday().to_monday_zero_offset().unsigned_abs());
                let hour = u32::from(z.hour().unsigned_abs());
                let minute = u32::from(z.minute().unsigned_abs());
                let m = day * 1440 + hour * 60 + minute;
                if from < to {
                    from <= m && m < to
                } else {
                    m >= from || m < to
                }
            }
            // Not reached: a policy with a bad window does not load.
            Err(_) => true,
        }
    }

    /// Whether it covers a request in `environment`.
    pub fn covers(&self, environment: Option<&str>) -> bool {
        self.environments.is_empty()
            || environment.is_some_and(|e| self.environments.iter().any(|x| x == e))
    }

    /// One line for the agent and `explain`.
    pub fn describe(&self) -> String {
        let when = match (&self.weekly, &self.start, &self.end) {
            (Some(w), _, _) => format!("every week {} to {} ({})", w.from, w.to, w.zone),
            (None, Some(s), Some(e)) => format!("{s} to {e}"),
            _ => String::new(),
        };
        let then = match self.freeze_approvals {
            Some(n) => format!("; gated requests need {n} approvers"),
            None => "; gated requests are rejected".into(),
        };
        format!(
            "change freeze {:?} ({when}): {}{then}",
            self.name, self.reason
        )
    }
}

/// Checks every freeze of a policy: a window that parses, a count of 1 to 20, known
/// environments, unique names.
pub fn validate(
    freezes: &[Freeze],
    environment_exists: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for f in freezes {
        if !names.insert(f.name.as_str()) {
            return Err(format!("freeze name {:?} is used twice", f.name));
        }
        f.window()
            .map_err(|e| format!("freeze {:?}: {e}", f.name))?;
        if f.freeze_approvals.is_some_and(|n| !(1..=20).contains(&n)) {
            return Err(format!(
                "freeze {:?}: freeze_approvals must be 1 to 20",
                f.name
            ));
        }
        if let Some(e) = f.environments.iter().find(|e| !environment_exists(e)) {
            return Err(format!(
                "freeze {:?} names environment {e:?}, which no [[environment]] defines",
                f.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn weekly(from: &str, to: &str, zone: &str) -> Freeze {
        Freeze {
            name: "w".into(),
            reason: "r".into(),
            environments: vec![],
            start: None,
            end: None,
            weekly: Some(Weekly {
                from: from.into(),
                to: to.into(),
                zone: zone.into(),
            }),
            freeze_approvals: None,
        }
    }

    #[test]
    fn a_weekly_window_wraps_over_the_weekend_in_its_own_zone() {
        let f = weekly("fri 18:00", "mon 08:00", "Europe/Berlin");
        // 2026-12-04 is a Friday. Berlin is UTC+1 in December.
        assert!(!f.active_at(at("2026-12-04T16:59:00Z")), "Fri 17:59 Berlin");
        assert!(f.active_at(at("2026-12-04T17:00:00Z")), "Fri 18:00 Berlin");
        assert!(f.active_at(at("2026-12-06T12:00:00Z")), "Sunday");
        assert!(f.active_at(at("2026-12-07T06:59:00Z")), "Mon 07:59 Berlin");
        assert!(!f.active_at(at("2026-12-07T07:00:00Z")), "Mon 08:00 Berlin");
        assert!(!f.active_at(at("2026-12-09T12:00:00Z")), "Wednesday");
        // In summer Berlin is UTC+2: the same wall time is another instant.
        assert!(f.active_at(at("2026-07-03T16:00:00Z")), "Fri 18:00 CEST");
        assert!(!f.active_at(at("2026-07-03T15:59:00Z")), "Fri 17:59 CEST");
        // A window inside one day.
        let f = weekly("tue 09:00", "tue 10:30", "UTC");
        assert!(f.active_at(at("2026-12-01T10:29:00Z")));
        assert!(!f.active_at(at("2026-12-01T10:30:00Z")));
        assert!(!f.active_at(at("2026-12-02T09:30:00Z")), "a Wednesday");
    }

    #[test]
    fn a_fixed_window_is_start_inclusive_and_end_exclusive() {
        let f = Freeze {
            start: Some("2026-12-20T00:00:00+01:00".into()),
            end: Some("2027-01-04T00:00:00+01:00".into()),
            weekly: None,
            ..weekly("mon 00:00", "mon 00:01", "UTC")
        };
        assert!(!f.active_at(at("2026-12-19T22:59:59Z")));
        assert!(f.active_at(at("2026-12-19T23:00:00Z")));
        assert!(!f.active_at(at("2027-01-03T23:00:00Z")));
    }

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        for (f, want) in [
            (weekly("fri 18:00", "fri 18:00", "UTC"), "same time"),
            (
                weekly("friday 18:00", "mon 08:00", "UTC"),
                "not a day and time",
            ),
            (
                weekly("fri 25:00", "mon 08:00", "UTC"),
                "not a day and time",
            ),
            (
                weekly("fri 18:00", "mon 08:00", "Mars/Olympus"),
                "weekly.zone",
            ),
            (
                Freeze {
                    weekly: None,
                    start: Some("2026-12-20 00:00".into()),
                    end: Some("2027-01-04T00:00:00Z".into()),
                    ..weekly("", "", "")
                },
                "RFC 3339",
            ),
            (
                Freeze {
                    weekly: None,
                    ..weekly("", "", "")
                },
                "needs start and end, or weekly",
            ),
        ] {
            let e = validate(&[f], &|_| true).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
