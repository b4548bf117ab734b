//! [`Phone`]: the `phone` field of a callback, a WhatsApp identifier normalized
//! (a person's digits, `<id>-group`, `<id>@broadcast`, `<id>@newsletter`,
//! `<id>@lid`), and [`Phone::masked`], the only form that may be logged.
//!
//! Personal data: the full value goes into the Kafka key and payload only,
//! never into logs or metric labels.

use std::fmt;

use crate::PresenceError;

/// What kind of WhatsApp identifier a [`Phone`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneKind {
    /// A person's number, digits only.
    Person,
    /// A group, normalized to `<id>-group`.
    Group,
    /// A broadcast list, `<id>@broadcast`.
    Broadcast,
    /// A channel, `<id>@newsletter`.
    Newsletter,
    /// A privacy-preserving linked id, `<id>@lid`.
    Lid,
}

impl PhoneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Group => "group",
            Self::Broadcast => "broadcast",
            Self::Newsletter => "newsletter",
            Self::Lid => "lid",
        }
    }
}

/// A normalized WhatsApp identifier. Personal data: its `Display` is the full
/// value (for the Kafka key and payload only); logs must use [`Phone::masked`].
/// Its `Debug` shows the masked form only.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone {
    value: String,
    kind: PhoneKind,
}

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, PresenceError> {
        let raw = raw.trim();
        let suffixes: [(&str, PhoneKind); 8] = [
            ("-group", PhoneKind::Group),
            ("@g.us", PhoneKind::Group),
            ("@broadcast", PhoneKind::Broadcast),
            // Z-API's form of a broadcast list (`1774895799-broadcast`).
            ("-broadcast", PhoneKind::Broadcast),
            ("@newsletter", PhoneKind::Newsletter),
            ("@lid", PhoneKind::Lid),
            ("@s.whatsapp.net", PhoneKind::Person),
            ("@c.us", PhoneKind::Person),
        ];
        let (body, kind) = suffixes
            .iter()
            .find_map(|(suffix, kind)| strip_suffix_ignore_case(raw, suffix).map(|b| (b, *kind)))
            .unwrap_or((raw, PhoneKind::Person));
        let value = match kind {
            PhoneKind::Person => {
                let digits = strip_formatting(body).ok_or(PresenceError::InvalidPhone)?;
                if !(8..=15).contains(&digits.len()) {
                    return Err(PresenceError::InvalidPhone);
                }
                digits
            }
            PhoneKind::Group => {
                // `<digits>` or the legacy `<creator digits>-<timestamp digits>`.
                let mut parts = body.splitn(2, '-');
                let head = parts.next().unwrap_or_default();
                let tail = parts.next();
                if !all_digits(head, 5, 30) || tail.is_some_and(|t| !all_digits(t, 5, 20)) {
                    return Err(PresenceError::InvalidPhone);
                }
                format!("{body}-group")
            }
            PhoneKind::Broadcast | PhoneKind::Newsletter | PhoneKind::Lid => {
                if !all_digits(body, 5, 30) {
                    return Err(PresenceError::InvalidPhone);
                }
                let suffix = match kind {
                    PhoneKind::Broadcast => "broadcast",
                    PhoneKind::Newsletter => "newsletter",
                    _ => "lid",
                };
                format!("{body}@{suffix}")
            }
        };
        Ok(Self { value, kind })
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    pub fn kind(&self) -> PhoneKind {
        self.kind
    }

    pub fn is_group(&self) -> bool {
        self.kind == PhoneKind::Group
    }

    /// Safe for logs: the first two and last two characters, the rest starred,
    /// e.g. `55*********99`.
    pub fn masked(&self) -> Masked<'_> {
        Masked(&self.value)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phone")
            .field("value", &format_args!("{}", self.masked()))
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// A phone number that is safe to log (see [`Phone::masked`]).
pub struct Masked<'a>(&'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.chars().count();
        for (i, c) in self.0.chars().enumerate() {
            let shown = n > 6 && (i < 2 || i + 2 >= n);
            if shown {
                write!(f, "{c}")?;
            } else {
                f.write_str("*")?;
            }
        }
        Ok(())
    }
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

/// Removes `+`, spaces, dots, dashes and parentheses; `None` if anything but
/// digits remains.
fn strip_formatting(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '0'..='9' => out.push(c),
            '+' | ' ' | '.' | '-' | '(' | ')' => {}
            _ => return None,
        }
    }
    Some(out)
}

fn all_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalize_by_table() {
        let cases: &[(&str, Option<(&str, PhoneKind)>)] = &[
            ("5544999999999", Some(("5544999999999", PhoneKind::Person))),
            (
                "+55 (44) 99999-9999",
                Some(("5544999999999", PhoneKind::Person)),
            ),
            (
                "+55.44.9999.9999",
                Some(("554499999999", PhoneKind::Person)),
            ),
            ("12345678", Some(("12345678", PhoneKind::Person))),
            (
                "123456789012345",
                Some(("123456789012345", PhoneKind::Person)),
            ),
            (
                "5544999999999@s.whatsapp.net",
                Some(("5544999999999", PhoneKind::Person)),
            ),
            (
                "5544999999999@c.us",
                Some(("5544999999999", PhoneKind::Person)),
            ),
            (
                "120363019502650977-group",
                Some(("120363019502650977-group", PhoneKind::Group)),
            ),
            (
                "120363019502650977@g.us",
                Some(("120363019502650977-group", PhoneKind::Group)),
            ),
            (
                "5544999999999-1580000000@g.us",
                Some(("5544999999999-1580000000-group", PhoneKind::Group)),
            ),
            (
                "120363019502650977-GROUP",
                Some(("120363019502650977-group", PhoneKind::Group)),
            ),
            (
                "1234567890@broadcast",
                Some(("1234567890@broadcast", PhoneKind::Broadcast)),
            ),
            (
                "1774895799-broadcast",
                Some(("1774895799@broadcast", PhoneKind::Broadcast)),
            ),
            (
                "120363123456789012@newsletter",
                Some(("120363123456789012@newsletter", PhoneKind::Newsletter)),
            ),
            (
                "98765432101234@lid",
                Some(("98765432101234@lid", PhoneKind::Lid)),
            ),
            ("1234567", None),
            ("1234567890123456", None),
            ("55449999x9999", None),
            ("", None),
            ("-group", None),
            ("abc-group", None),
            ("12@g.us", None),
            ("5544999999999@example.com", None),
            ("٥٥٤٤٩٩٩٩٩٩٩٩٩", None),
        ];
        for (raw, want) in cases {
            let got = Phone::parse(raw).ok().map(|p| (p.value.clone(), p.kind));
            let want = want.map(|(v, k)| (v.to_string(), k));
            assert_eq!(got, want, "phone {raw:?}");
        }
    }

    #[test]
    fn masked_phone_hides_the_middle() {
        let p = Phone::parse("5544999999999").unwrap();
        assert_eq!(p.masked().to_string(), "55*********99");
        let g = Phone::parse("120363019502650977-group").unwrap();
        assert!(!g.masked().to_string().contains("0363019502650977"));
        let debug = format!("{p:?}");
        assert!(!debug.contains("5544999999999"), "{debug}");
        assert!(debug.contains("55*********99"), "{debug}");
    }
}
