//! Money as integer cents: exact, never binary floating point.

use std::fmt;

/// An amount of money in cents of the club's currency.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Cents(pub i64);

impl Cents {
    /// Price of `minutes` at `per_hour`, rounded half away from zero to the cent.
    pub fn for_minutes(per_hour: Cents, minutes: i64) -> Cents {
        let numerator = per_hour.0 * minutes;
        let rounded = if numerator >= 0 {
            (numerator + 30) / 60
        } else {
            (numerator - 30) / 60
        };
        Cents(rounded)
    }

    /// Parses a decimal string with at most two fraction digits ("24", "24.5", "24.50").
    pub fn parse(text: &str) -> Option<Cents> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || fraction.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
        let cents = whole.checked_mul(100)?.checked_add(fraction)?;
        Some(Cents(if negative { -cents } else { cents }))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_two_decimals() {
        assert_eq!(Cents(2400).to_string(), "24.00");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(-150).to_string(), "-1.50");
    }

    #[test]
    fn parses_what_it_formats() {
        for cents in [0, 1, 99, 100, 2450, 123456789] {
            assert_eq!(Cents::parse(&Cents(cents).to_string()), Some(Cents(cents)));
        }
        assert_eq!(Cents::parse("24.5"), Some(Cents(2450)));
        assert_eq!(Cents::parse("24"), Some(Cents(2400)));
        assert_eq!(Cents::parse("2.345"), None);
        assert_eq!(Cents::parse("abc"), None);
    }

    #[test]
    fn price_for_minutes_is_exact_or_rounded_half_up() {
        assert_eq!(Cents::for_minutes(Cents(2400), 90), Cents(3600));
        assert_eq!(Cents::for_minutes(Cents(2550), 45), Cents(1913)); // 19.125 -> 19.13
        assert_eq!(Cents::for_minutes(Cents(3000), 15), Cents(750));
    }
}
