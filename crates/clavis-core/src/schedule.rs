//! Rotation schedules of Secrets Manager's `RotationRules`: `AutomaticallyAfterDays`,
//! `rate(N days)` / `rate(N hours)`, and AWS's six-field `cron(minutes hours day-of-month month
//! day-of-week year)` in UTC, with `*`, `?`, lists (`,`), ranges (`-`), steps (`/`) and month and
//! weekday names; `L`, `W` and `#` are refused as not supported.

use clavis_sigv4::civil_from_days;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// How far ahead a cron schedule is searched for its next time (a year field may name a year
/// with no match until then; such a schedule never fires).
const HORIZON_DAYS: i64 = 5 * 366;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every this many milliseconds from the last time.
    Every(i64),
    /// At the times a cron expression names.
    Cron(Box<Cron>),
}

/// A cron expression's fields, as sets of allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    /// `None` for `?`.
    days_of_month: Option<Vec<bool>>,
    months: Vec<bool>,
    /// 1 = Sunday .. 7 = Saturday; `None` for `?`.
    days_of_week: Option<Vec<bool>>,
    /// `None` for `*`.
    years: Option<Vec<bool>>,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(s: &str, names: &[&str], offset: u32) -> Option<u32> {
    s.parse().ok().or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(s)).and_then(|i| u32::try_from(i).ok()).map(|i| i + offset))
}

/// One field: the values from `min` to `max` it allows.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; usize::try_from(max).unwrap_or(0) + 1];
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && !names.iter().any(|n| part.contains(n)) {
            return Err(format!("'{part}': L, W and # are not supported by Clavis"));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| format!("'{part}': a step must be a positive number"))?)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, names, min).ok_or_else(|| format!("'{a}' is not a value"))?,
                value(b, names, min).ok_or_else(|| format!("'{b}' is not a value"))?,
            )
        } else {
            let v = value(range, names, min).ok_or_else(|| format!("'{range}' is not a value"))?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("'{part}' is outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            allowed[usize::try_from(v).unwrap_or(0)] = true;
            v += step;
        }
    }
    Ok(allowed)
}

/// Parses a `ScheduleExpression` (`rate(...)` or `cron(...)`).
pub fn parse(expr: &str) -> Result<Schedule, String> {
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        let (n, unit) = inner.split_once(' ').unwrap_or((inner, ""));
        let n: i64 = n.parse().map_err(|_| format!("{expr} is not a rate"))?;
        return match unit {
            "day" | "days" if (1..=1000).contains(&n) => Ok(Schedule::Every(n * DAY_MS)),
            "hour" | "hours" if (4..=24_000).contains(&n) => Ok(Schedule::Every(n * 3_600_000)),
            _ => Err(format!("{expr}: rate() takes 1 to 1000 days, or at least 4 hours")),
        };
    }
    let Some(inner) = expr.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) else {
        return Err(format!("{expr} is neither rate(...) nor cron(...)"));
    };
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [minutes, hours, dom, month, dow, year] = parts.as_slice() else {
        return Err(format!("{expr}: cron() takes six fields: minutes hours day-of-month month day-of-week year"));
    };
    let (dom, dow) = match (*dom, *dow) {
        ("?", "?") => return Err("only one of day-of-month and day-of-week may be ?".into()),
        ("?", d) => (None, Some(field(d, 1, 7, &WEEKDAYS)?)),
        (d, "?") => (Some(field(d, 1, 31, &[])?), None),
        _ => return Err(format!("{expr}: one of day-of-month and day-of-week must be ?")),
    };
    Ok(Schedule::Cron(Box::new(Cron {
        minutes: field(minutes, 0, 59, &[])?,
        hours: field(hours, 0, 23, &[])?,
        days_of_month: dom,
        months: field(month, 1, 12, &MONTHS)?,
        days_of_week: dow,
        years: if *year == "*" { None } else { Some(field(year, 1970, 2199, &[])?) },
    })))
}

fn allows(set: &[bool], v: i64) -> bool {
    usize::try_from(v).ok().and_then(|i| set.get(i)).copied().unwrap_or(false)
}

impl Schedule {
    /// The first time of the schedule after `now_ms` (Unix ms, UTC), if any within five years.
    pub fn next_after(&self, now_ms: i64) -> Option<i64> {
        let cron = match self {
            Schedule::Every(ms) => return Some(now_ms + ms),
            Schedule::Cron(c) => c,
        };
        let start = (now_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
        let first_day = start.div_euclid(DAY_MS);
        for day in first_day..first_day + HORIZON_DAYS {
            let (y, m, d) = civil_from_days(day);
            let weekday = (day + 4).rem_euclid(7) + 1; // 1970-01-01 was a Thursday; 1 = Sunday
            let day_ok = cron.years.as_ref().is_none_or(|ys| allows(ys, y))
                && allows(&cron.months, m)
                && cron.days_of_month.as_ref().is_none_or(|ds| allows(ds, d))
                && cron.days_of_week.as_ref().is_none_or(|ws| allows(ws, weekday));
            if !day_ok {
                continue;
            }
            for h in 0..24 {
                if !allows(&cron.hours, h) {
                    continue;
                }
                for min in 0..60 {
                    let t = day * DAY_MS + h * 3_600_000 + min * MINUTE_MS;
                    if t >= start && allows(&cron.minutes, min) {
                        return Some(t);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        clavis_sigv4::days_from_civil(y, mo, d) * DAY_MS + h * 3_600_000 + mi * MINUTE_MS
    }

    #[test]
    fn cron_next_times() {
        // 2026-11-30 is a Monday.
        let now = at(2026, 11, 30, 10, 30);
        let next = |e: &str| parse(e).map(|s| s.next_after(now)).unwrap_or_else(|m| panic!("{e}: {m}"));
        assert_eq!(next("cron(0 12 * * ? *)"), Some(at(2026, 11, 30, 12, 0)));
        assert_eq!(next("cron(0 8 * * ? *)"), Some(at(2026, 12, 1, 8, 0)));
        assert_eq!(next("cron(0 16 1,15 * ? *)"), Some(at(2026, 12, 1, 16, 0)));
        assert_eq!(next("cron(0 0 ? * SUN *)"), Some(at(2026, 12, 6, 0, 0)));
        assert_eq!(next("cron(0 0 ? * 2-6 *)"), Some(at(2026, 12, 1, 0, 0)));
        assert_eq!(next("cron(*/15 * * * ? *)"), Some(at(2026, 11, 30, 10, 45)));
        assert_eq!(next("cron(0 9 1 JAN ? 2027)"), Some(at(2027, 1, 1, 9, 0)));
        assert_eq!(next("cron(0 9 29 FEB ? 2027)"), None, "no 29 February in 2027");
        assert_eq!(next("rate(10 days)"), Some(now + 10 * DAY_MS));
        for bad in [
            "cron(0 12 * * * *)",
            "cron(0 12 ? * ? *)",
            "cron(0 12 L * ? *)",
            "cron(60 12 * * ? *)",
            "cron(0 12 * *)",
            "rate(2 hours)",
            "every day",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
