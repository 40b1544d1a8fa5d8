//! RFC 3339 timestamps ⇄ microseconds since the Unix epoch (UTC), without a date crate: the
//! parse threads convert every record's `ts`, so this is on the hot path.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses an RFC 3339 date-time (`2026-11-24T18:00:00.123456Z`, `...+02:00`; `t`/`z` and a
/// space separator accepted) into microseconds since the epoch, UTC. Fractions beyond
/// microseconds are truncated. Returns `None` for anything else.
///
/// ```
/// assert_eq!(pinflow::time::parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000));
/// assert_eq!(pinflow::time::parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
/// assert_eq!(pinflow::time::parse_rfc3339("yesterday"), None);
/// ```
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, min, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year as i64, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (digits(&b[i + 1..i + 3])?, digits(&b[i + 4..i + 6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 3600 + om * 60) as i64;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // A leap second (:60) is folded onto the next second, as most systems do.
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64 - offset_secs;
    Some(secs * 1_000_000 + micros)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Length of [`format_rfc3339_micros`]'s output for years 0000..=9999.
pub const RFC3339_MICROS_LEN: usize = 27;

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ` into `out`
/// (exactly [`RFC3339_MICROS_LEN`] bytes for years 0..=9999).
///
/// ```
/// let mut s = Vec::new();
/// pinflow::time::format_rfc3339_micros(1_500_000, &mut s);
/// assert_eq!(s, b"1970-01-01T00:00:01.500000Z");
/// ```
pub fn format_rfc3339_micros(micros: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_eras() {
        for micros in [
            0i64,
            1,
            999_999,
            86_399_999_999,
            951_782_400_000_000,
            1_795_564_800_123_456,
            -1,
            -86_400_000_001,
        ] {
            let mut s = Vec::new();
            format_rfc3339_micros(micros, &mut s);
            assert_eq!(s.len(), RFC3339_MICROS_LEN);
            assert_eq!(
                parse_rfc3339(std::str::from_utf8(&s).unwrap()),
                Some(micros),
                "{}",
                String::from_utf8_lossy(&s)
            );
        }
    }

    #[test]
    fn accepts_offsets_and_rejects_nonsense() {
        assert_eq!(
            parse_rfc3339("2026-11-24T18:00:00Z"),
            parse_rfc3339("2026-11-24T19:30:00+01:30")
        );
        assert_eq!(
            parse_rfc3339("2026-11-24 18:00:00.1234567z"),
            parse_rfc3339("2026-11-24T18:00:00.123456Z")
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T18:00:00",
            "2026-11-24T18:00:00.Z",
            "2026-11-24T18:00:00Zjunk",
            "2026-1-24T18:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses an HTTP-date in the IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110
/// §5.6.7) into seconds since the Unix epoch. The weekday is not checked.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.trim().split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let mon = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
    );
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Formats seconds since the Unix epoch as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn format_http_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let t = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[mo as usize - 1],
        y,
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod http_date_tests {
    use super::*;

    #[test]
    fn http_dates_round_trip() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }
}

/// `at + d`, saturating: an instant that far ahead does not fit the clock (a duration near
/// `u64::MAX` seconds, which a library caller may set without validation), so it becomes the
/// farthest reachable of 100 years, a year or a day ahead — "never", in practice — instead
/// of panicking with "overflow when adding duration to instant".
///
/// ```
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert_eq!(pinflow::time::after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
/// assert!(pinflow::time::after(now, Duration::MAX) > now + Duration::from_secs(86_400));
/// ```
pub fn after(at: std::time::Instant, d: std::time::Duration) -> std::time::Instant {
    const YEAR: u64 = 365 * 24 * 3600;
    at.checked_add(d).unwrap_or_else(|| {
        [100 * YEAR, YEAR, 24 * 3600]
            .into_iter()
            .find_map(|s| at.checked_add(std::time::Duration::from_secs(s)))
            .unwrap_or(at)
    })
}
