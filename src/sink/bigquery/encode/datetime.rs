//! BigQuery's date and time literals: DATE, TIME, DATETIME and TIMESTAMP text → the values the
//! Storage Write API takes (days, normalised text, microseconds since the epoch).

use chrono::{Datelike, NaiveDate, NaiveTime};

/// BigQuery's TIMESTAMP range, 0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999 UTC, in
/// microseconds since the epoch.
pub(super) const MIN_MICROS: i64 = -62_135_596_800_000_000;
pub(super) const MAX_MICROS: i64 = 253_402_300_799_999_999;
pub(super) const TIMESTAMP_RANGE: &str =
    "out of range (TIMESTAMP runs from 0001-01-01 to 9999-12-31 23:59:59.999999 UTC)";
const DATE_FORMAT: &str = "expected YYYY-MM-DD";
const TIME_FORMAT: &str = "expected HH:MM:SS with up to 6 fractional digits";
const DATETIME_FORMAT: &str = "expected YYYY-MM-DD HH:MM:SS[.ffffff] (or T between date and time)";
const TIMESTAMP_FORMAT: &str = "expected YYYY-MM-DD HH:MM:SS[.ffffff] (or T between date and \
     time) with an optional Z, UTC or ±HH:MM offset, or seconds since the epoch";

/// A time of day as parsed: fields validated, the fraction kept as the digits written (up to
/// 6; digits beyond microseconds are dropped, since BigQuery cannot store them).
pub(super) struct Time<'a> {
    hour: u32,
    minute: u32,
    second: u32,
    fraction: &'a str,
}

impl Time<'_> {
    fn micros(&self) -> u32 {
        let mut micros = 0;
        for i in 0..6 {
            let d = self.fraction.as_bytes().get(i).map_or(0, |b| b - b'0');
            micros = micros * 10 + u32::from(d);
        }
        micros
    }

    /// Length of the normalised text `HH:MM:SS[.f…]`.
    fn text_len(&self) -> usize {
        8 + if self.fraction.is_empty() {
            0
        } else {
            1 + self.fraction.len()
        }
    }

    fn push(&self, out: &mut Vec<u8>) {
        push_digits(out, self.hour, 2);
        out.push(b':');
        push_digits(out, self.minute, 2);
        out.push(b':');
        push_digits(out, self.second, 2);
        if !self.fraction.is_empty() {
            out.push(b'.');
            out.extend_from_slice(self.fraction.as_bytes());
        }
    }
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    for i in (0..width).rev() {
        out.push(b'0' + (value / 10u32.pow(i) % 10) as u8);
    }
}

fn push_date(date: NaiveDate, out: &mut Vec<u8>) {
    push_digits(out, date.year().unsigned_abs(), 4);
    out.push(b'-');
    push_digits(out, date.month(), 2);
    out.push(b'-');
    push_digits(out, date.day(), 2);
}

/// A hand-written scanner for BigQuery's date and time literals. It is stricter and clearer in
/// its errors than chrono's format strings, which accept signs, extra digits and padding that
/// BigQuery does not. chrono validates the calendar.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, i: 0 }
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Between `min` and `max` ASCII digits as a number.
    /// On failure nothing is consumed.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut value = 0u32;
        while self.i - start < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(b - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        if self.i - start < min {
            self.i = start;
            return None;
        }
        Some(value)
    }

    /// `YYYY-[M]M-[D]D`, as in BigQuery's date literals.
    fn date(&mut self) -> Result<NaiveDate, &'static str> {
        let year = self.number(4, 4).ok_or(DATE_FORMAT)?;
        if !self.eat(b'-') {
            return Err(DATE_FORMAT);
        }
        let month = self.number(1, 2).ok_or(DATE_FORMAT)?;
        if !self.eat(b'-') {
            return Err(DATE_FORMAT);
        }
        let day = self.number(1, 2).ok_or(DATE_FORMAT)?;
        if year == 0 {
            return Err("year 0000 is out of range (dates run from 0001-01-01 to 9999-12-31)");
        }
        let year = i32::try_from(year).map_err(|_| DATE_FORMAT)?;
        NaiveDate::from_ymd_opt(year, month, day).ok_or("no such day in the calendar")
    }

    /// `[H]H:[M]M:[S]S[.fraction]`, with up to 9 fractional digits (nanoseconds, as Java and Go
    /// loggers write them), truncated to microseconds.
    fn time(&mut self) -> Result<Time<'a>, &'static str> {
        let hour = self.number(1, 2).ok_or(TIME_FORMAT)?;
        if !self.eat(b':') {
            return Err(TIME_FORMAT);
        }
        let minute = self.number(1, 2).ok_or(TIME_FORMAT)?;
        if !self.eat(b':') {
            return Err(TIME_FORMAT);
        }
        let second = self.number(1, 2).ok_or(TIME_FORMAT)?;
        let mut fraction = "";
        if self.eat(b'.') {
            let start = self.i;
            self.number(1, 9).ok_or(TIME_FORMAT)?;
            let digits = self.s.get(start..self.i).ok_or(TIME_FORMAT)?;
            fraction = digits.get(..6).unwrap_or(digits);
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err("no such time of day (hours run 00–23, minutes and seconds 00–59)");
        }
        Ok(Time {
            hour,
            minute,
            second,
            fraction,
        })
    }
}

/// `[H]H:[M]M:[S]S[.fraction]` and nothing else: a TIME column's value.
pub(super) fn parse_time(s: &str) -> Result<Time<'_>, &'static str> {
    let mut cursor = Cursor::new(s);
    let time = cursor.time()?;
    if cursor.done() {
        Ok(time)
    } else {
        Err(TIME_FORMAT)
    }
}

/// A TIME value as the length-prefixed normalised text BigQuery takes (`HH:MM:SS[.f…]`).
pub(super) fn put_time(time: &Time<'_>, out: &mut Vec<u8>) {
    prost::encoding::encode_varint(time.text_len() as u64, out);
    time.push(out);
}

/// A DATETIME value as length-prefixed normalised text (`YYYY-MM-DD HH:MM:SS[.f…]`).
pub(super) fn put_datetime((date, time): (NaiveDate, Time<'_>), out: &mut Vec<u8>) {
    prost::encoding::encode_varint((11 + time.text_len()) as u64, out);
    push_date(date, out);
    out.push(b' ');
    time.push(out);
}

/// Days since 1970-01-01 from `YYYY-MM-DD`, the DATE proto encoding.
pub(super) fn parse_date_only(s: &str) -> Result<i32, &'static str> {
    let mut cursor = Cursor::new(s);
    let date = cursor.date()?;
    if !cursor.done() {
        return Err(DATE_FORMAT);
    }
    Ok(days_since_epoch(date))
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    /// `num_days_from_ce` of 1970-01-01.
    const EPOCH_FROM_CE: i32 = 719_163;
    date.num_days_from_ce() - EPOCH_FROM_CE
}

/// `YYYY-MM-DD[ |T]HH:MM:SS[.ffffff]`. A zone or offset is rejected rather than dropped:
/// DATETIME is civil time, and dropping the offset would silently shift the value.
pub(super) fn parse_datetime(s: &str) -> Result<(NaiveDate, Time<'_>), &'static str> {
    let mut cursor = Cursor::new(s);
    let date = cursor
        .date()
        .map_err(|e| if e == DATE_FORMAT { DATETIME_FORMAT } else { e })?;
    if !(cursor.eat(b' ') || cursor.eat(b'T') || cursor.eat(b't')) {
        return Err(DATETIME_FORMAT);
    }
    let time = cursor
        .time()
        .map_err(|e| if e == TIME_FORMAT { DATETIME_FORMAT } else { e })?;
    if !cursor.done() {
        return Err("DATETIME has no time zone; only YYYY-MM-DD HH:MM:SS[.ffffff] is accepted");
    }
    Ok((date, time))
}

/// RFC 3339 (`2024-01-02T03:04:05.123456Z`, `+01:00`) and BigQuery's canonical
/// `2024-01-02 03:04:05[.ffffff][ UTC|Z|±HH:MM]`. No zone means UTC, as in BigQuery. A date
/// alone is rejected: it is more likely a wrong column than midnight UTC.
pub(super) fn parse_timestamp(s: &str) -> Result<i64, &'static str> {
    let mut cursor = Cursor::new(s);
    let date = cursor.date().map_err(|e| {
        if e == DATE_FORMAT {
            TIMESTAMP_FORMAT
        } else {
            e
        }
    })?;
    if cursor.done() {
        return Err("a date without a time of day");
    }
    if !(cursor.eat(b' ') || cursor.eat(b'T') || cursor.eat(b't')) {
        return Err(TIMESTAMP_FORMAT);
    }
    let time = cursor.time().map_err(|e| {
        if e == TIME_FORMAT {
            TIMESTAMP_FORMAT
        } else {
            e
        }
    })?;
    let spaced = cursor.eat(b' ');
    let offset_seconds: i64 = match cursor.peek() {
        None if !spaced => 0,
        Some(b'Z' | b'z') => {
            cursor.i += 1;
            0
        }
        Some(b'+' | b'-') => {
            let negative = cursor.peek() == Some(b'-');
            cursor.i += 1;
            let hours = cursor.number(2, 2).ok_or(TIMESTAMP_FORMAT)?;
            let minutes = if cursor.eat(b':') {
                cursor.number(2, 2).ok_or(TIMESTAMP_FORMAT)?
            } else {
                cursor.number(2, 2).unwrap_or(0)
            };
            if hours > 23 || minutes > 59 {
                return Err("offset out of range");
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if negative {
                -seconds
            } else {
                seconds
            }
        }
        Some(_)
            if cursor
                .s
                .get(cursor.i..)
                .is_some_and(|rest| rest.eq_ignore_ascii_case("utc")) =>
        {
            cursor.i = cursor.s.len();
            0
        }
        _ => return Err(TIMESTAMP_FORMAT),
    };
    if !cursor.done() {
        return Err(TIMESTAMP_FORMAT);
    }
    let time_of_day = NaiveTime::from_hms_opt(time.hour, time.minute, time.second)
        .ok_or("no such time of day")?;
    let seconds = date.and_time(time_of_day).and_utc().timestamp() - offset_seconds;
    let micros = seconds * 1_000_000 + i64::from(time.micros());
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(TIMESTAMP_RANGE)
    }
}
