//! [`Payload`]: a callback's JSON object exactly as the provider sent it,
//! carried next to the normalized fields so that nothing it sent is lost
//! (unknown content kinds, new fields, numbers with more digits than an
//! `f64` holds, repeated keys). Personal data: its `Debug` shows its size only.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The provider's JSON object, byte for byte (without surrounding whitespace
/// or a byte-order mark). Serializes as that JSON text, unchanged.
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    pub(crate) fn new(raw: Box<RawValue>) -> Self {
        Self(raw)
    }

    /// The JSON text as sent.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The raw JSON value (for `serde_json` users).
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Never true for a payload the parser built (it is an object).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// The payload parsed into any type, e.g. `serde_json::Value` (which keeps
    /// the last of a repeated key, and reads numbers as `f64` or integers).
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

/// The size only: the payload holds message bodies, names and phones.
impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

/// Equal when the JSON text is the same, byte for byte.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Payload {}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Reads any JSON value back as it was written (a consumer's side).
impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_kept_byte_for_byte_and_debug_shows_its_size_only() {
        let text = r#"{"phone":"5544999999999","n":-99.999999999999999,"a":1,"a":2}"#;
        let p: Payload = serde_json::from_str(text).unwrap();
        assert_eq!(p.get(), text);
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
        assert_eq!(format!("{p:?}"), format!("Payload({} bytes)", text.len()));
        let v: serde_json::Value = p.parse().unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(p.clone(), p);
    }
}
