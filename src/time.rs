//! RFC 3339 timestamps ⇄ microseconds since the Unix epoch (UTC), without a date crate: the
//! parse threads convert every record's `ts`, so this is on the hot path.
//!
//! Also the configured formats of `schema.timestamp_format` ([`TimeFormat`]: epoch numbers
//! and a strftime subset) and fixed zones of `schema.timestamp_zone` ([`parse_zone`]). The
//! subset is small enough to write here (a pattern is compiled once, then matched byte by
//! byte) and needs no date crate: with fixed offsets only, there is no tz database to ship.

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

/// The digits of a fraction of a second at `*i`, as microseconds (digits past the sixth are
/// read and dropped), and how many there were; `*i` moves past them. `None` without a digit.
#[inline]
fn fraction_micros(b: &[u8], i: &mut usize) -> Option<(i64, usize)> {
    let start = *i;
    let mut micros = 0i64;
    while *i < b.len() && b[*i].is_ascii_digit() {
        if *i - start < 6 {
            micros = micros * 10 + (b[*i] - b'0') as i64;
        }
        *i += 1;
    }
    let n = *i - start;
    if n == 0 {
        return None;
    }
    for _ in n..6 {
        micros *= 10;
    }
    Some((micros, n))
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
        micros = fraction_micros(b, &mut i)?.0;
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
    if (0..=9999).contains(&y) {
        // Digit by digit: `write!`'s padding machinery was 5 % of the Kafka output's writer
        // thread (a timestamp a row).
        let digits = |out: &mut Vec<u8>, v: i64, width: u32| {
            for p in (0..width).rev() {
                out.push(b'0' + (v / 10i64.pow(p) % 10) as u8);
            }
        };
        digits(out, y, 4);
        out.push(b'-');
        digits(out, m.into(), 2);
        out.push(b'-');
        digits(out, d.into(), 2);
        out.push(b'T');
        digits(out, sod / 3600, 2);
        out.push(b':');
        digits(out, sod % 3600 / 60, 2);
        out.push(b':');
        digits(out, sod % 60, 2);
        out.push(b'.');
        digits(out, frac, 6);
        out.push(b'Z');
        return;
    }
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
    fn rfc3339_digits_by_hand_match_the_padded_format_and_years_past_9999_fall_back() {
        // The digit-by-digit path (years 0..=9999) against `format!`'s padding, from the
        // first microsecond of year 0 to the last of 9999, and the `write!` path beyond.
        let first = -62_167_219_200_000_000i64; // 0000-01-01T00:00:00Z
        let last = 253_402_300_799_999_999i64; // 9999-12-31T23:59:59.999999Z
        let step = (last - first) / 997;
        for micros in (0..=997).map(|i| first + i * step).chain([last, 0, -1]) {
            let secs = micros.div_euclid(1_000_000);
            let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, m, d) = civil_from_days(days);
            let expected = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
                sod / 3600,
                sod % 3600 / 60,
                sod % 60,
                micros.rem_euclid(1_000_000)
            );
            let mut s = Vec::new();
            format_rfc3339_micros(micros, &mut s);
            assert_eq!(String::from_utf8(s).unwrap(), expected);
        }
        for (micros, expected) in [
            (first, "0000-01-01T00:00:00.000000Z"),
            (last, "9999-12-31T23:59:59.999999Z"),
            (last + 1, "10000-01-01T00:00:00.000000Z"),
            (first - 1, "-001-12-31T23:59:59.999999Z"),
        ] {
            let mut s = Vec::new();
            format_rfc3339_micros(micros, &mut s);
            assert_eq!(String::from_utf8(s).unwrap(), expected);
        }
    }

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

// ---------------------------------------------------------------------------------------------
// Configured timestamp formats (`schema.timestamp_format`, `schema.timestamp_zone`): what log
// shippers offer (Vector's `timestamp_format`, Fluent Bit's `time_format` and `time_offset`).

/// The unit of an epoch timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl EpochUnit {
    /// `v` of this unit in microseconds.
    fn to_micros(self, v: f64) -> f64 {
        match self {
            EpochUnit::Seconds => v * 1e6,
            EpochUnit::Millis => v * 1e3,
            EpochUnit::Micros => v,
            EpochUnit::Nanos => v / 1e3,
        }
    }

    /// The unit of an epoch number of unknown unit, by its magnitude: seconds below 10¹¹
    /// (up to the year 5138), milliseconds below 10¹⁴, microseconds below 10¹⁷, else
    /// nanoseconds. Every current time in each unit falls in its band.
    pub fn by_magnitude(v: f64) -> EpochUnit {
        let a = v.abs();
        if a < 1e11 {
            EpochUnit::Seconds
        } else if a < 1e14 {
            EpochUnit::Millis
        } else if a < 1e17 {
            EpochUnit::Micros
        } else {
            EpochUnit::Nanos
        }
    }
}

/// One piece of a strftime pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Literal(u8),
    /// Any run of whitespace in the pattern matches any run (at least one) in the text.
    Space,
    Year,
    Month,
    MonthAbbr,
    Day,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Fraction,
    Offset,
}

/// How timestamp strings (and numbers) are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// RFC 3339 strings (the fast path); a JSON number is an epoch time, its unit decided by
    /// its magnitude ([`EpochUnit::by_magnitude`]).
    #[default]
    Rfc3339,
    /// Epoch numbers (or strings of one) in this unit.
    Epoch(EpochUnit),
    /// A strftime pattern (the subset in [`TimeFormat::parse_spec`]'s docs).
    Pattern(Strftime),
}

/// A parsed strftime pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strftime(Vec<Item>);

impl TimeFormat {
    /// `rfc3339`, `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns`, or a strftime pattern of
    /// this subset: `%Y` year (4 digits), `%m` month, `%d` day, `%e` day (space-padded), `%j`
    /// day of the year, `%b` English month abbreviation (`Jan`; `%h` too), `%H` `%M` `%S` hour,
    /// minute, second, `%f` fraction digits (1 to 9; after a `.` written in the pattern),
    /// `%z` offset (`+0200`, `+02:00`, `Z`), `%T` = `%H:%M:%S`, `%F` = `%Y-%m-%d`, `%%` a `%`.
    /// A space matches any run of whitespace; other characters match themselves.
    ///
    /// ```
    /// use pinflow::time::TimeFormat;
    /// assert!("epoch_ms".parse::<TimeFormat>().is_ok());
    /// assert!("%d/%b/%Y:%H:%M:%S %z".parse::<TimeFormat>().is_ok());
    /// assert!("%Y-%m-%d %I".parse::<TimeFormat>().unwrap_err().contains("%I"));
    /// ```
    pub fn parse_spec(s: &str) -> Result<TimeFormat, String> {
        s.parse()
    }

    /// Whether strings read this way carry their own offset (RFC 3339 does; a pattern only
    /// with `%z`); epoch times are UTC.
    pub fn has_offset(&self) -> bool {
        match self {
            TimeFormat::Rfc3339 | TimeFormat::Epoch(_) => true,
            TimeFormat::Pattern(p) => p.0.contains(&Item::Offset),
        }
    }
}

impl std::str::FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rfc3339" => TimeFormat::Rfc3339,
            "epoch_s" => TimeFormat::Epoch(EpochUnit::Seconds),
            "epoch_ms" => TimeFormat::Epoch(EpochUnit::Millis),
            "epoch_us" => TimeFormat::Epoch(EpochUnit::Micros),
            "epoch_ns" => TimeFormat::Epoch(EpochUnit::Nanos),
            p if p.contains('%') => TimeFormat::Pattern(Strftime(pattern(p)?)),
            other => {
                return Err(format!(
                    "`{other}` is not rfc3339, epoch_s, epoch_ms, epoch_us, epoch_ns or a \
                     strftime pattern such as \"%Y-%m-%d %H:%M:%S\""
                ))
            }
        })
    }
}

fn pattern(p: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut chars = p.bytes();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if items.last() != Some(&Item::Space) {
                items.push(Item::Space);
            }
            continue;
        }
        if c != b'%' {
            items.push(Item::Literal(c));
            continue;
        }
        let Some(d) = chars.next() else {
            return Err(format!("`{p}` ends with a lone `%`"));
        };
        match d {
            b'Y' => items.push(Item::Year),
            b'm' => items.push(Item::Month),
            b'b' | b'h' => items.push(Item::MonthAbbr),
            b'd' | b'e' => items.push(Item::Day),
            b'j' => items.push(Item::DayOfYear),
            b'H' => items.push(Item::Hour),
            b'M' => items.push(Item::Minute),
            b'S' => items.push(Item::Second),
            b'f' => items.push(Item::Fraction),
            b'z' => items.push(Item::Offset),
            b'T' => items.extend([
                Item::Hour,
                Item::Literal(b':'),
                Item::Minute,
                Item::Literal(b':'),
                Item::Second,
            ]),
            b'F' => items.extend([
                Item::Year,
                Item::Literal(b'-'),
                Item::Month,
                Item::Literal(b'-'),
                Item::Day,
            ]),
            b'%' => items.push(Item::Literal(b'%')),
            other => {
                return Err(format!(
                    "`{p}`: %{} is not supported (supported: %Y %m %d %e %j %b %H %M %S %f %z \
                     %T %F %%)",
                    other as char
                ))
            }
        }
    }
    if !items.contains(&Item::Year) {
        return Err(format!("`{p}` has no year (%Y or %F)"));
    }
    let has_date = items.contains(&Item::DayOfYear)
        || (items
            .iter()
            .any(|i| matches!(i, Item::Month | Item::MonthAbbr))
            && items.contains(&Item::Day));
    if !has_date {
        return Err(format!("`{p}` has no full date (%m or %b with %d, or %j)"));
    }
    Ok(items)
}

/// A fixed UTC offset for timestamps that carry none (`schema.timestamp_zone`): `UTC`, `Z`, or
/// `+HH:MM` / `-HH:MM` (`+HHMM` too). Zone names (`Europe/Paris`) are refused: their offsets
/// change with daylight saving time, which needs the tz database pinflow does not ship.
///
/// ```
/// assert_eq!(pinflow::time::parse_zone("+02:00"), Ok(7200));
/// assert_eq!(pinflow::time::parse_zone("UTC"), Ok(0));
/// assert!(pinflow::time::parse_zone("Europe/Paris").unwrap_err().contains("daylight"));
/// ```
pub fn parse_zone(s: &str) -> Result<i32, String> {
    if matches!(s, "UTC" | "utc" | "Z" | "z") {
        return Ok(0);
    }
    match offset_secs(s.as_bytes()) {
        Some((secs, used)) if used == s.len() => Ok(secs),
        _ if s.contains('/') || s.chars().all(|c| c.is_ascii_alphabetic()) => Err(format!(
            "`{s}`: zone names are not supported (their offset changes with daylight saving \
             time); give a fixed offset such as +02:00, or UTC"
        )),
        _ => Err(format!("`{s}` is not UTC or an offset such as +02:00")),
    }
}

/// An offset at the start of `b`: `Z`, `+HH:MM`, `+HHMM` or `+HH`; its seconds east of UTC and
/// the bytes it took.
fn offset_secs(b: &[u8]) -> Option<(i32, usize)> {
    match b.first()? {
        b'Z' | b'z' => Some((0, 1)),
        sign @ (b'+' | b'-') => {
            let h = digits(b.get(1..3)?)?;
            let (m, used) = match b.get(3) {
                Some(b':') => (digits(b.get(4..6)?)?, 6),
                Some(c) if c.is_ascii_digit() => (digits(b.get(3..5)?)?, 5),
                _ => (0, 3),
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i32;
            Some((if *sign == b'-' { -secs } else { secs }, used))
        }
        _ => None,
    }
}

/// How timestamps are read: a format, and the zone of date-times that carry no offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimestampRule {
    /// The format.
    pub format: TimeFormat,
    /// Seconds east of UTC for date-times without an offset; `None`: an RFC 3339 one is
    /// refused, and a pattern without `%z` reads as UTC (the configuration refuses that
    /// combination; a library caller gets UTC).
    pub zone: Option<i32>,
}

impl TimestampRule {
    /// Microseconds since the epoch of a timestamp string, or why not.
    pub fn parse_str(&self, s: &str) -> Result<i64, String> {
        match &self.format {
            TimeFormat::Rfc3339 => parse_rfc3339(s).ok_or_else(|| self.not_rfc3339(s)),
            TimeFormat::Epoch(unit) => match s.trim().parse::<f64>() {
                Ok(v) => self.epoch(v, *unit),
                Err(_) => Err(format!("`{s}` is not an epoch number")),
            },
            TimeFormat::Pattern(p) => parse_pattern(&p.0, s.as_bytes(), self.zone.unwrap_or(0))
                .ok_or_else(|| format!("`{s}` does not match the timestamp format")),
        }
    }

    /// Microseconds since the epoch of a timestamp number, or why not.
    pub fn parse_number(&self, v: f64) -> Result<i64, String> {
        match &self.format {
            TimeFormat::Rfc3339 => self.epoch(v, EpochUnit::by_magnitude(v)),
            TimeFormat::Epoch(unit) => self.epoch(v, *unit),
            TimeFormat::Pattern(_) => Err(format!(
                "{v} is a number, the timestamp format expects a string"
            )),
        }
    }

    fn epoch(&self, v: f64, unit: EpochUnit) -> Result<i64, String> {
        let us = unit.to_micros(v);
        // ±2⁶² µs is ±146,000 years: anything past it is not a time.
        if !us.is_finite() || us.abs() > 4.6e18 {
            return Err(format!("{v} is out of range for a timestamp"));
        }
        Ok(us.round() as i64)
    }

    /// Why `s` was refused in RFC 3339 mode.
    fn not_rfc3339(&self, s: &str) -> String {
        format!("`{s}` is not an RFC 3339 date-time")
    }

    /// [`TimestampRule::parse_str`] for RFC 3339 with an offset-less date-time read in the zone
    /// when one is configured.
    pub fn parse_rfc3339_or_local(&self, s: &str) -> Result<i64, String> {
        if let Some(us) = parse_rfc3339(s) {
            return Ok(us);
        }
        let b = s.as_bytes();
        let local = b.len() >= 19
            && !b[19..]
                .iter()
                .any(|c| matches!(c, b'Z' | b'z' | b'+' | b'-'));
        match (local, self.zone) {
            (true, Some(zone)) => {
                let mut with = String::with_capacity(s.len() + 6);
                with.push_str(s);
                with.push('Z');
                parse_rfc3339(&with)
                    .map(|us| us - zone as i64 * 1_000_000)
                    .ok_or_else(|| self.not_rfc3339(s))
            }
            (true, None) => Err(format!(
                "`{s}` has no UTC offset; set schema.timestamp_zone (--timestamp-zone) to \
                 say which zone such times are in"
            )),
            _ => Err(self.not_rfc3339(s)),
        }
    }
}

/// Up to `max` digits at `b[*i..]` (at least one), advancing `i`.
fn number_at(b: &[u8], i: &mut usize, max: usize) -> Option<u32> {
    let start = *i;
    let mut v = 0u32;
    while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
        v = v * 10 + (b[*i] - b'0') as u32;
        *i += 1;
    }
    (*i > start).then_some(v)
}

fn parse_pattern(items: &[Item], b: &[u8], zone: i32) -> Option<i64> {
    let (mut year, mut month, mut day, mut yday) = (None, 1u32, 1u32, None);
    let (mut hour, mut min, mut sec, mut micros) = (0u32, 0u32, 0u32, 0i64);
    let mut offset = zone;
    let mut i = 0;
    for item in items {
        match item {
            Item::Literal(c) => {
                if b.get(i) != Some(c) {
                    return None;
                }
                i += 1;
            }
            Item::Space => {
                let start = i;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i == start {
                    return None;
                }
            }
            Item::Year => year = Some(number_at(b, &mut i, 4)?),
            Item::Month => month = number_at(b, &mut i, 2)?,
            Item::MonthAbbr => {
                let word = b.get(i..i + 3)?;
                month = MONTHS
                    .iter()
                    .position(|m| m.as_bytes().eq_ignore_ascii_case(word))?
                    as u32
                    + 1;
                i += 3;
            }
            Item::Day => {
                if b.get(i) == Some(&b' ') {
                    i += 1; // %e pads with a space.
                }
                day = number_at(b, &mut i, 2)?;
            }
            Item::DayOfYear => yday = Some(number_at(b, &mut i, 3)?),
            Item::Hour => hour = number_at(b, &mut i, 2)?,
            Item::Minute => min = number_at(b, &mut i, 2)?,
            Item::Second => sec = number_at(b, &mut i, 2)?,
            Item::Fraction => {
                let (fraction, digits) = fraction_micros(b, &mut i)?;
                if digits > 9 {
                    return None;
                }
                micros = fraction;
            }
            Item::Offset => {
                let (secs, used) = offset_secs(&b[i..])?;
                offset = secs;
                i += used;
            }
        }
    }
    if i != b.len() {
        return None;
    }
    let year = year? as i64;
    let days = match yday {
        Some(n) => {
            let len = if days_in_month(year, 2) == 29 {
                366
            } else {
                365
            };
            if n == 0 || n > len {
                return None;
            }
            days_from_civil(year, 1, 1) + n as i64 - 1
        }
        None => {
            if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
                return None;
            }
            days_from_civil(year, month, day)
        }
    };
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64 - offset as i64;
    Some(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod format_tests {
    use super::*;

    fn rule(format: &str, zone: Option<&str>) -> TimestampRule {
        TimestampRule {
            format: format.parse().unwrap(),
            zone: zone.map(|z| parse_zone(z).unwrap()),
        }
    }

    const T: i64 = 1_795_533_600_000_000; // 2026-11-24T15:20:00Z

    #[test]
    fn epoch_units_are_fixed_or_decided_by_magnitude() {
        let ms = rule("epoch_ms", None);
        assert_eq!(ms.parse_number(1_795_533_600_000.0), Ok(T));
        assert_eq!(ms.parse_str("1795533600000"), Ok(T));
        assert_eq!(
            rule("epoch_s", None).parse_number(1_795_533_600.5),
            Ok(T + 500_000)
        );
        assert_eq!(rule("epoch_us", None).parse_number(T as f64), Ok(T));
        assert_eq!(rule("epoch_ns", None).parse_number(T as f64 * 1e3), Ok(T));
        // The default reads a number by its magnitude.
        let auto = rule("rfc3339", None);
        for v in [
            1_795_533_600.0,
            1_795_533_600_000.0,
            T as f64,
            T as f64 * 1e3,
        ] {
            assert_eq!(auto.parse_number(v), Ok(T), "{v}");
        }
        assert!(ms.parse_number(f64::INFINITY).is_err());
        assert!(rule("epoch_s", None).parse_number(1e300).is_err());
        assert!(ms.parse_str("soon").is_err());
    }

    #[test]
    fn rfc3339_without_an_offset_takes_the_zone_or_says_to_set_it() {
        let strict = rule("rfc3339", None);
        assert_eq!(strict.parse_rfc3339_or_local("2026-11-24T15:20:00Z"), Ok(T));
        let e = strict
            .parse_rfc3339_or_local("2026-11-24T15:20:00")
            .unwrap_err();
        assert!(e.contains("timestamp_zone"), "{e}");
        let paris = rule("rfc3339", Some("+01:00"));
        assert_eq!(
            paris.parse_rfc3339_or_local("2026-11-24T16:20:00.25"),
            Ok(T + 250_000)
        );
        assert_eq!(
            rule("rfc3339", Some("UTC")).parse_rfc3339_or_local("2026-11-24 15:20:00"),
            Ok(T)
        );
        assert!(paris.parse_rfc3339_or_local("yesterday").is_err());
    }

    #[test]
    fn strftime_patterns_of_the_subset() {
        let clf = rule("%d/%b/%Y:%H:%M:%S %z", None);
        assert_eq!(clf.parse_str("24/Nov/2026:17:20:00 +0200"), Ok(T));
        assert_eq!(clf.parse_str("24/nov/2026:15:20:00 Z"), Ok(T));
        assert!(clf.parse_str("24/Nox/2026:15:20:00 Z").is_err());
        let local = rule("%F %T.%f", Some("-05:00"));
        assert_eq!(
            local.parse_str("2026-11-24 10:20:00.123456789"),
            Ok(T + 123_456)
        );
        assert_eq!(rule("%F %T", None).parse_str("2026-11-24  15:20:00"), Ok(T));
        assert_eq!(
            rule("%Y %j %H:%M:%S", None).parse_str("2026 328 15:20:00"),
            Ok(T)
        );
        assert_eq!(
            rule("%b %e %Y %T", None).parse_str("Nov  4 2026 00:00:00"),
            Ok(parse_rfc3339("2026-11-04T00:00:00Z").unwrap())
        );
        assert!(rule("%F %T", None)
            .parse_str("2026-02-30 00:00:00")
            .is_err());
        assert!(rule("%F %T", None)
            .parse_str("2026-11-24 15:20:00 trailing")
            .is_err());
        assert!(rule("%F", None).parse_number(1.0).is_err());
        assert_eq!(rule("%F", None).parse_str("1970-01-02"), Ok(86_400_000_000));
    }

    #[test]
    fn formats_and_zones_are_checked() {
        assert!("%H:%M"
            .parse::<TimeFormat>()
            .unwrap_err()
            .contains("no year"));
        assert!("%Y-%m"
            .parse::<TimeFormat>()
            .unwrap_err()
            .contains("full date"));
        assert!("%Y-%m-%d %I"
            .parse::<TimeFormat>()
            .unwrap_err()
            .contains("%I"));
        assert!("%Y-%m-%d %".parse::<TimeFormat>().is_err());
        assert!("iso".parse::<TimeFormat>().is_err());
        assert!("%F %T %z".parse::<TimeFormat>().unwrap().has_offset());
        assert!(!"%F %T".parse::<TimeFormat>().unwrap().has_offset());
        assert_eq!(parse_zone("-0530"), Ok(-19_800));
        assert!(parse_zone("+25:00").is_err());
        assert!(parse_zone("Europe/Paris")
            .unwrap_err()
            .contains("zone names"));
        assert!(parse_zone("CET").unwrap_err().contains("zone names"));
    }
}
