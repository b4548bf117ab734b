//! What `connected.rs` and `disconnected.rs` share: the two connection
//! kinds differ only in their type, their schema and the name of their flag
//! (`connected` or `disconnected`), so one macro writes both.

/// Declares a connection kind's `TYPE`, `DATASCHEMA`, `Envelope`, `encode`
/// and `Data`, with `$flag` the name of the callback's flag field.
macro_rules! connection_kind {
    ($ty:literal, $schema:literal, $flag:ident) => {
        use serde::{Deserialize, Serialize};
        use time::OffsetDateTime;
        use uuid::Uuid;

        use crate::cloudevent::{display_opt, CloudEvent, InstanceSource};
        use zapi::{Connection, Millis, Payload};

        crate::cloudevent::declare_kind!($ty, $schema);

        /// What [`encode`] writes as `data`; [`Data`] reads it back.
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireData<'a> {
            instance_id: &'a str,
            $flag: Option<bool>,
            #[serde(serialize_with = "display_opt")]
            moment: Option<Millis>,
            payload: &'a Payload,
        }

        /// Encodes `e` as an envelope of this kind.
        pub fn encode(e: &Connection, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
            let data = WireData {
                instance_id: e.instance_id.as_str(),
                $flag: e.flag,
                moment: e.moment_ms.map(Millis),
                payload: &e.payload,
            };
            let source = InstanceSource(e.instance_id.as_str());
            CloudEvent::new::<Data>(id, source, time, Some(e.instance_id.as_str()), data)
                .encode(512 + e.payload.len())
        }

        /// `data` as a consumer reads it. Unknown fields are ignored.
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Data {
            /// Also the record's key and `partitionkey`.
            pub instance_id: String,
            /// The callback's flag (`connected` or `disconnected`), as sent.
            pub $flag: Option<bool>,
            /// `momment`, RFC 3339 UTC with three fractional digits (seconds
            /// or milliseconds as sent, normalized by magnitude).
            pub moment: Option<String>,
            /// The callback as the provider sent it (`phone`, `error`, ...).
            pub payload: Payload,
        }
    };
}
pub(crate) use connection_kind;
