//! E.164 phone numbers, parsed once at the edge.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// A phone number in E.164 form: `+`, a country code that does not start
/// with 0, and at most 15 digits in all.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "+15551230000")]
pub struct E164(String);

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    #[error("phone number must start with '+' followed by the country code")]
    MissingPlus,
    #[error("phone number may contain only digits after '+' (spaces, dashes, dots and brackets are ignored)")]
    NotDigits,
    #[error("phone number must have between 8 and 15 digits")]
    Length,
    #[error("country code cannot start with 0")]
    LeadingZero,
}

impl E164 {
    /// Parse a number, accepting common separators (`+1 (555) 123-0000`).
    pub fn parse(input: &str) -> Result<Self, E164Error> {
        let trimmed = input.trim();
        let rest = trimmed.strip_prefix('+').ok_or(E164Error::MissingPlus)?;
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(E164Error::NotDigits),
            }
        }
        let n = digits.len() - 1;
        if !(8..=15).contains(&n) {
            return Err(E164Error::Length);
        }
        if digits.as_bytes()[1] == b'0' {
            return Err(E164Error::LeadingZero);
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for E164 {
    type Err = E164Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        E164::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(E164::parse("+15551230000").unwrap().as_str(), "+15551230000");
        assert_eq!(E164::parse(" +1 (555) 123-0000 ").unwrap().as_str(), "+15551230000");
        assert_eq!(E164::parse("+442071838750").unwrap().as_str(), "+442071838750");
    }

    #[test]
    fn rejects_bad_numbers() {
        assert_eq!(E164::parse("15551230000"), Err(E164Error::MissingPlus));
        assert_eq!(E164::parse("+1555abc0000"), Err(E164Error::NotDigits));
        assert_eq!(E164::parse("+1234"), Err(E164Error::Length));
        assert_eq!(E164::parse("+1234567890123456"), Err(E164Error::Length));
        assert_eq!(E164::parse("+0155512300"), Err(E164Error::LeadingZero));
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<E164>("\"+15551230000\"").is_ok());
        assert!(serde_json::from_str::<E164>("\"555\"").is_err());
    }
}
