//! The bytes of a spool segment. See the crate docs ([`crate`]) for the
//! layout; this file is the only code that knows it.

use uuid::Uuid;

/// First bytes of every segment written today (format version 2: each
/// record stores its kind).
pub const MAGIC: &[u8; 8] = b"PBSPOOL2";
/// First bytes of a version-1 segment (no kind): still read, never written.
pub const MAGIC_V1: &[u8; 8] = b"PBSPOOL1";
/// Bytes of a segment's header (the magic).
pub const SEGMENT_HEADER: u64 = MAGIC.len() as u64;
/// Frame header: body length (u32 LE) and CRC-32 of the body (u32 LE).
pub const FRAME_HEADER: usize = 8;
/// Fixed part of a version-2 body: seq, arrival, id, kind, topic length, key length.
const BODY_FIXED: usize = 8 + 8 + 16 + 2 + 2 + 2;
/// Fixed part of a version-1 body: the same without the kind.
const BODY_FIXED_V1: usize = BODY_FIXED - 2;
/// Largest body accepted when reading; anything larger is corruption.
pub const MAX_BODY: usize = 20 * 1024 * 1024;

/// The format version of a segment, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `PBSPOOL1`: records without a kind (read as [`RecordKind::UNKNOWN`]).
    V1,
    /// `PBSPOOL2`: records with a kind.
    V2,
    /// The header is damaged: each record is read as version 2, else as
    /// version 1 (a version-1 body read as version 2 takes two bytes of
    /// its topic for a topic length, which does not fit the body; the
    /// checksum then decides nothing, the layout does).
    Unknown,
}

impl Version {
    /// The version a segment's first eight bytes name.
    pub fn of_header(header: &[u8]) -> Self {
        match header {
            h if h == MAGIC => Self::V2,
            h if h == MAGIC_V1 => Self::V1,
            _ => Self::Unknown,
        }
    }
}

/// What a record holds, as a number the spool stores but does not
/// interpret: the crates above it name the kinds (presence event, rejected
/// input, and the kinds to come). Records of version-1 segments have
/// [`RecordKind::UNKNOWN`]: their reader decides from the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RecordKind(pub u16);

impl RecordKind {
    /// Not stored: a record of a version-1 segment.
    pub const UNKNOWN: Self = Self(0);
}

/// One spooled event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    /// Arrival time, Unix milliseconds.
    pub arrival_ms: i64,
    pub id: Uuid,
    pub kind: RecordKind,
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
}

impl StoredRecord {
    /// Bytes this record takes in a segment, frame included.
    pub fn framed_len(&self) -> usize {
        framed_len(&self.topic, &self.key, &self.value)
    }
}

/// Bytes a record with these parts takes in a segment, frame included.
pub fn framed_len(topic: &str, key: &str, value: &[u8]) -> usize {
    FRAME_HEADER + BODY_FIXED + topic.len() + key.len() + value.len()
}

/// Appends the framed record to `out`.
pub fn encode(r: &StoredRecord, out: &mut Vec<u8>) {
    let head = Head {
        seq: r.seq,
        arrival_ms: r.arrival_ms,
        id: &r.id,
        kind: r.kind,
    };
    encode_parts(&head, &r.topic, &r.key, &r.value, out);
}

/// The fixed fields of a record, borrowed for [`encode_parts`].
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub seq: u64,
    pub arrival_ms: i64,
    pub id: &'a Uuid,
    pub kind: RecordKind,
}

/// Appends a framed version-2 record built from its parts (no intermediate copy).
pub fn encode_parts(head: &Head<'_>, topic: &str, key: &str, value: &[u8], out: &mut Vec<u8>) {
    // Topic names are at most 249 bytes and keys are short WhatsApp ids.
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&head.seq.to_le_bytes());
    out.extend_from_slice(&head.arrival_ms.to_le_bytes());
    out.extend_from_slice(head.id.as_bytes());
    out.extend_from_slice(&head.kind.0.to_le_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let body = &out[start + FRAME_HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes at some offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame says: a torn write, or the end of the data.
    Incomplete,
    /// The length is impossible or the checksum does not match.
    Corrupt,
}

/// Reads the frame at the start of `buf`: the body length if `buf` holds a
/// whole frame whose checksum matches.
pub fn check_frame(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
    if !(BODY_FIXED_V1..=MAX_BODY).contains(&len) {
        return Err(FrameError::Corrupt);
    }
    let Some(body) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(FrameError::Incomplete);
    };
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Corrupt);
    }
    Ok(len)
}

/// Decodes a body whose checksum was already verified, as a record of a
/// segment of `version`.
pub fn decode_body(body: &[u8], version: Version) -> Result<StoredRecord, FrameError> {
    match version {
        Version::V1 => decode_fields(body, false),
        Version::V2 => decode_fields(body, true),
        Version::Unknown => decode_fields(body, true).or_else(|_| decode_fields(body, false)),
    }
}

fn decode_fields(body: &[u8], with_kind: bool) -> Result<StoredRecord, FrameError> {
    let take = |at: usize, n: usize| body.get(at..at + n).ok_or(FrameError::Corrupt);
    let u16_at = |at: usize| -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(
            take(at, 2)?.try_into().map_err(|_| FrameError::Corrupt)?,
        ))
    };
    let seq = u64::from_le_bytes(take(0, 8)?.try_into().map_err(|_| FrameError::Corrupt)?);
    let arrival_ms = i64::from_le_bytes(take(8, 8)?.try_into().map_err(|_| FrameError::Corrupt)?);
    let id = Uuid::from_slice(take(16, 16)?).map_err(|_| FrameError::Corrupt)?;
    let (kind, topic_at) = if with_kind {
        (RecordKind(u16_at(32)?), 34)
    } else {
        (RecordKind::UNKNOWN, 32)
    };
    let topic_len = usize::from(u16_at(topic_at)?);
    let topic =
        std::str::from_utf8(take(topic_at + 2, topic_len)?).map_err(|_| FrameError::Corrupt)?;
    let key_at = topic_at + 2 + topic_len;
    let key_len = usize::from(u16_at(key_at)?);
    let key = std::str::from_utf8(take(key_at + 2, key_len)?).map_err(|_| FrameError::Corrupt)?;
    let value = body
        .get(key_at + 2 + key_len..)
        .ok_or(FrameError::Corrupt)?;
    Ok(StoredRecord {
        seq,
        arrival_ms,
        id,
        kind,
        topic: topic.to_owned(),
        key: key.to_owned(),
        value: value.to_vec(),
    })
}

/// The file name of the segment whose first record has sequence `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence number of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The checkpoint file: magic, the ack watermark (u64 LE), CRC-32 of the watermark.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"PBACKED1";

pub fn encode_checkpoint(watermark: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&watermark.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&watermark.to_le_bytes()).to_le_bytes());
    out
}

pub fn decode_checkpoint(buf: &[u8]) -> Option<u64> {
    if buf.len() != 20 || &buf[..8] != CHECKPOINT_MAGIC {
        return None;
    }
    let w: [u8; 8] = buf[8..16].try_into().ok()?;
    let crc = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    (crc32fast::hash(&w) == crc).then(|| u64::from_le_bytes(w))
}

/// The checkpoint file (`checkpoint`): two fixed-size slots, preallocated
/// when the file is created and then only overwritten in place, so writing
/// a checkpoint never needs a new disk block (a full disk can still record
/// deliveries and so free space). Each write goes to the slot not holding the
/// newest durable checkpoint, with a generation one higher; a read takes
/// the valid slot with the highest generation, so a torn write leaves the
/// previous checkpoint readable.
///
/// ```text
/// checkpoint := slot slot                       (CHECKPOINT_SLOT bytes each)
/// slot       := "PBCKPT02" generation:u64le len:u32le check:u64le payload[len] zeros
///                                               (check = FNV-1a 64 of generation, len and payload)
/// ```
/// The payload is opaque here (today: [`encode_checkpoint`]). The check is
/// not a CRC-32: a CRC-32 over a message that ends with its own CRC-32 is
/// the same constant whatever the message (CRC is linear), and today's
/// payload ends that way, so a slot torn between two such payloads would
/// pass (the power-cut test found it).
pub const SLOT_MAGIC: &[u8; 8] = b"PBCKPT02";
/// Slot header: magic, generation, payload length, check.
pub const SLOT_HEADER: usize = 8 + 8 + 4 + 8;
/// Largest checkpoint payload.
pub const MAX_CHECKPOINT_PAYLOAD: usize = 32 * 1024;
/// Bytes of one slot: the header and the largest payload, rounded up to 4 KiB pages.
pub const CHECKPOINT_SLOT: usize = (SLOT_HEADER + MAX_CHECKPOINT_PAYLOAD).div_ceil(4096) * 4096;
/// Bytes of the checkpoint file.
pub const CHECKPOINT_FILE_BYTES: usize = 2 * CHECKPOINT_SLOT;

/// FNV-1a 64 of the generation, the payload length and the payload.
fn slot_check(generation: u64, payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let len = (payload.len() as u32).to_le_bytes();
    for b in generation.to_le_bytes().iter().chain(&len).chain(payload) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The bytes of a slot holding `payload` (header and payload, no padding);
/// `None` if the payload is larger than [`MAX_CHECKPOINT_PAYLOAD`].
pub fn encode_slot(generation: u64, payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_CHECKPOINT_PAYLOAD {
        return None;
    }
    let mut out = Vec::with_capacity(SLOT_HEADER + payload.len());
    out.extend_from_slice(SLOT_MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&slot_check(generation, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// A valid slot at the start of `buf`: its generation and payload.
pub fn decode_slot(buf: &[u8]) -> Option<(u64, &[u8])> {
    if buf.len() < SLOT_HEADER || &buf[..8] != SLOT_MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(buf[16..20].try_into().ok()?) as usize;
    let check = u64::from_le_bytes(buf[20..28].try_into().ok()?);
    if len > MAX_CHECKPOINT_PAYLOAD {
        return None;
    }
    let payload = buf.get(SLOT_HEADER..SLOT_HEADER + len)?;
    (slot_check(generation, payload) == check).then_some((generation, payload))
}

/// The newest valid slot of a checkpoint file: (slot index, generation, payload).
pub fn newest_slot(file: &[u8]) -> Option<(usize, u64, &[u8])> {
    (0..2)
        .filter_map(|i| {
            let slot = file.get(i * CHECKPOINT_SLOT..)?;
            let slot = &slot[..slot.len().min(CHECKPOINT_SLOT)];
            decode_slot(slot).map(|(g, p)| (i, g, p))
        })
        .max_by_key(|(_, g, _)| *g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> StoredRecord {
        StoredRecord {
            seq,
            arrival_ms: 1_700_000_000_123,
            id: Uuid::now_v7(),
            kind: RecordKind(1),
            topic: "whatsapp.presence.v1".into(),
            key: "5544999999999".into(),
            value: br#"{"specversion":"1.0"}"#.to_vec(),
        }
    }

    #[test]
    fn records_round_trip() {
        let r = rec(42);
        let mut buf = Vec::new();
        encode(&r, &mut buf);
        assert_eq!(buf.len(), r.framed_len());
        let len = check_frame(&buf).unwrap();
        let body = &buf[FRAME_HEADER..FRAME_HEADER + len];
        assert_eq!(decode_body(body, Version::V2).unwrap(), r);
        assert_eq!(decode_body(body, Version::Unknown).unwrap(), r);
    }

    #[test]
    fn version_1_records_are_read_with_an_unknown_kind() {
        let r = rec(7);
        let mut buf = Vec::new();
        crate::testkit::encode_v1(&r, &mut buf);
        let len = check_frame(&buf).unwrap();
        let body = &buf[FRAME_HEADER..FRAME_HEADER + len];
        let want = StoredRecord {
            kind: RecordKind::UNKNOWN,
            ..r
        };
        assert_eq!(decode_body(body, Version::V1).unwrap(), want);
        // A damaged header: version 2 does not fit, version 1 does.
        assert_eq!(decode_body(body, Version::Unknown).unwrap(), want);
        assert_eq!(Version::of_header(MAGIC_V1), Version::V1);
        assert_eq!(Version::of_header(MAGIC), Version::V2);
        assert_eq!(Version::of_header(b"PBSPOOL3"), Version::Unknown);
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode(&rec(1), &mut buf);
        assert_eq!(
            check_frame(&buf[..buf.len() - 1]),
            Err(FrameError::Incomplete)
        );
        assert_eq!(check_frame(&buf[..5]), Err(FrameError::Incomplete));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(check_frame(&bad).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn names_and_checkpoints() {
        assert_eq!(segment_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(7)), Some(7));
        assert_eq!(parse_segment_name("7.seg"), None);
        assert_eq!(decode_checkpoint(&encode_checkpoint(99)), Some(99));
        let mut bad = encode_checkpoint(99);
        bad[9] ^= 1;
        assert_eq!(decode_checkpoint(&bad), None);
    }

    #[test]
    fn checkpoint_slots_pick_the_newest_valid_one() {
        let mut file = vec![0u8; CHECKPOINT_FILE_BYTES];
        assert_eq!(newest_slot(&file), None);
        let a = encode_slot(7, b"seven").unwrap();
        file[..a.len()].copy_from_slice(&a);
        let b = encode_slot(8, b"eight").unwrap();
        file[CHECKPOINT_SLOT..CHECKPOINT_SLOT + b.len()].copy_from_slice(&b);
        assert_eq!(newest_slot(&file), Some((1, 8, &b"eight"[..])));
        // A torn write of slot 1: the older slot is read.
        file[CHECKPOINT_SLOT + SLOT_HEADER + 2] ^= 1;
        assert_eq!(newest_slot(&file), Some((0, 7, &b"seven"[..])));
        assert!(encode_slot(1, &vec![0; MAX_CHECKPOINT_PAYLOAD]).is_some());
        assert!(encode_slot(1, &vec![0; MAX_CHECKPOINT_PAYLOAD + 1]).is_none());
        assert_eq!(CHECKPOINT_SLOT % 4096, 0);
    }

    #[test]
    fn a_slot_torn_between_two_checkpoints_is_refused() {
        // The case a CRC-32 misses: payloads ending in their own CRC-32.
        let new = encode_slot(3, &encode_checkpoint(7)).unwrap();
        let old = encode_slot(1, &encode_checkpoint(0)).unwrap();
        for p in 1..new.len() {
            let mut torn = new[..p].to_vec();
            torn.extend_from_slice(&old[p..]);
            if torn != new && torn != old {
                assert_eq!(decode_slot(&torn), None, "torn at {p} accepted");
            }
        }
    }
}
