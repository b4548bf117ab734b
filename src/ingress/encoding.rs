//! `Content-Encoding` of webhook bodies. Z-API may gzip its webhooks (an
//! unmerged page of its docs says so, `../shared/zapi/callbacks.md` §1), so
//! `gzip` is decompressed here, under two bounds that keep a small
//! compressed bomb from growing memory: the decompressed size (the route's
//! body limit) and, once past `http.max_body_bytes`, the ratio to the
//! compressed size (`http.max_decompression_ratio`). Any other encoding is
//! refused with 415 before the body is read.

use std::io::Read;

use bytes::Bytes;
use hyper::header::CONTENT_ENCODING;
use hyper::HeaderMap;

use super::reply::Rejection;

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No `Content-Encoding`, or `identity`.
    Identity,
    /// `gzip` (or its old alias `x-gzip`).
    Gzip,
}

impl Encoding {
    /// The body's encoding from its headers: one coding, case-insensitive;
    /// anything else (`br`, `deflate`, a list) is a 415.
    pub fn of(headers: &HeaderMap) -> Result<Self, Rejection> {
        let mut values = headers.get_all(CONTENT_ENCODING).iter();
        let Some(value) = values.next() else {
            return Ok(Self::Identity);
        };
        if values.next().is_some() {
            return Err(Rejection::UnsupportedEncoding);
        }
        let coding = value.to_str().map_err(|_| Rejection::UnsupportedEncoding)?;
        match coding.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Self::Identity),
            "gzip" | "x-gzip" => Ok(Self::Gzip),
            _ => Err(Rejection::UnsupportedEncoding),
        }
    }
}

/// Bytes decompressed at a time between the checks of the bounds.
const CHUNK: usize = 16 * 1024;

/// The bounds of one decompression.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most decompressed bytes (the route's body limit).
    pub limit: usize,
    /// Past this many decompressed bytes, the ratio applies.
    pub free: usize,
    /// Most decompressed bytes per compressed byte.
    pub ratio: usize,
}

/// The decompressed body (`body` itself for identity).
pub fn decode(encoding: Encoding, body: Bytes, bounds: Bounds) -> Result<Bytes, Rejection> {
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => gunzip(&body, bounds).map(Bytes::from),
    }
}

fn gunzip(compressed: &[u8], b: Bounds) -> Result<Vec<u8>, Rejection> {
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(b.limit));
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| Rejection::MalformedEncoding(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > b.limit {
            return Err(Rejection::PayloadTooLarge { limit: b.limit });
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > b.free && out.len() / compressed.len().max(1) >= b.ratio {
            return Err(Rejection::DecompressionRatio { ratio: b.ratio });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use hyper::header::HeaderValue;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    const BOUNDS: Bounds = Bounds {
        limit: 1 << 20,
        free: 64 * 1024,
        ratio: 100,
    };

    #[test]
    fn encodings_are_recognised_and_the_rest_refused() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(v));
            Encoding::of(&h)
        };
        assert_eq!(Encoding::of(&HeaderMap::new()).unwrap(), Encoding::Identity);
        assert_eq!(with("identity").unwrap(), Encoding::Identity);
        assert_eq!(with("GZIP").unwrap(), Encoding::Gzip);
        assert_eq!(with(" x-gzip ").unwrap(), Encoding::Gzip);
        for bad in ["br", "deflate", "gzip, br", "compress"] {
            assert!(
                matches!(with(bad), Err(Rejection::UnsupportedEncoding)),
                "{bad}"
            );
        }
        let mut two = HeaderMap::new();
        two.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        two.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(matches!(
            Encoding::of(&two),
            Err(Rejection::UnsupportedEncoding)
        ));
    }

    #[test]
    fn gzip_round_trips_and_identity_is_untouched() {
        let body = br#"{"type":"PresenceChatCallback"}"#;
        let out = decode(Encoding::Gzip, gzip(body), BOUNDS).unwrap();
        assert_eq!(&out[..], body);
        let same = decode(Encoding::Identity, Bytes::from_static(b"x"), BOUNDS).unwrap();
        assert_eq!(&same[..], b"x");
    }

    #[test]
    fn a_long_text_with_a_normal_ratio_is_accepted() {
        // 65,536 characters of varied text: compresses far less than 100:1.
        let text: String = (0..65_536u32)
            .map(|i| char::from_u32(0x61 + (i.wrapping_mul(2_654_435_761) >> 27) % 26).unwrap())
            .collect();
        let body = format!(r#"{{"text":{{"message":"{text}"}}}}"#);
        let out = decode(Encoding::Gzip, gzip(body.as_bytes()), BOUNDS).unwrap();
        assert_eq!(out.len(), body.len());
    }

    #[test]
    fn a_bomb_is_stopped_by_the_ratio_long_before_the_limit() {
        // 16 MiB of zeros compress to about 16 KiB. With a limit as large
        // as the bomb, the ratio stops it at about 1.6 MB decompressed.
        let zeros = vec![0u8; 16 << 20];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let bounds = Bounds {
            limit: 16 << 20,
            ..BOUNDS
        };
        let err = decode(Encoding::Gzip, bomb, bounds).unwrap_err();
        assert!(
            matches!(err, Rejection::DecompressionRatio { ratio: 100 }),
            "{err:?}"
        );
        // Without the ratio, the size limit still holds.
        let bounds = Bounds {
            ratio: usize::MAX,
            ..BOUNDS
        };
        let err = decode(Encoding::Gzip, gzip(&zeros), bounds).unwrap_err();
        assert!(
            matches!(err, Rejection::PayloadTooLarge { limit } if limit == 1 << 20),
            "{err:?}"
        );
    }

    #[test]
    fn a_corrupt_stream_is_a_precise_400() {
        let mut bad = gzip(b"{\"a\":1}").to_vec();
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        bad.truncate(n - 3);
        let err = decode(Encoding::Gzip, Bytes::from(bad), BOUNDS).unwrap_err();
        assert!(matches!(err, Rejection::MalformedEncoding(_)), "{err:?}");
        let err = decode(Encoding::Gzip, Bytes::from_static(b"plain"), BOUNDS).unwrap_err();
        assert!(matches!(err, Rejection::MalformedEncoding(_)), "{err:?}");
    }
}
