//! What the operator's `presence-bridge spool inspect` and `spool verify`
//! compute from a spool directory: the totals, the damaged segments, the
//! JSON report and the verdict lines. Read-only, built on the views of
//! [`store`] (`inspect`, `oldest_pending`); the command line
//! only checks the directory, prints and picks the exit code.

use std::path::Path;

use super::store::{self, SegmentReport};
use super::SpoolError;

/// One read of a spool directory's segments and checkpoint.
#[derive(Debug, Clone)]
pub struct Survey {
    pub watermark: u64,
    pub checkpoint_lost: bool,
    pub segments: Vec<SegmentReport>,
}

/// `spool verify`'s result: the lines to print, and whether all was sound.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub lines: Vec<String>,
    pub ok: bool,
}

/// Scans every segment without changing anything ([`store::inspect`]).
pub fn survey(dir: &Path) -> Result<Survey, SpoolError> {
    let (watermark, checkpoint_lost, segments) = store::inspect(dir)?;
    Ok(Survey {
        watermark,
        checkpoint_lost,
        segments,
    })
}

impl Survey {
    /// Records above the settled set, over every segment.
    pub fn pending(&self) -> u64 {
        self.segments.iter().map(|s| s.pending).sum()
    }

    /// Segments with a torn tail or corrupt records.
    pub fn damaged(&self) -> Vec<&SegmentReport> {
        self.segments
            .iter()
            .filter(|s| s.torn_bytes > 0 || s.corrupt_regions > 0)
            .collect()
    }

    /// `spool inspect`'s JSON: `running` from the lock, `dead_letters` the
    /// lines of the dead-letter file, `format_arrival` the oldest pending
    /// arrival (Unix ms) as text.
    pub fn inspect_report(
        &self,
        dir: &Path,
        running: bool,
        dead_letters: usize,
        format_arrival: impl Fn(i64) -> String,
    ) -> serde_json::Value {
        let oldest = store::oldest_pending(dir, self.watermark).ok().flatten();
        serde_json::json!({
            "dir": dir.display().to_string(),
            "bridge_running": running,
            "watermark": self.watermark,
            "checkpoint_lost": self.checkpoint_lost,
            "pending_events": self.pending(),
            "oldest_pending_arrival": oldest.map(format_arrival),
            "bytes": self.segments.iter().map(|s| s.bytes).sum::<u64>(),
            "dead_letters": dead_letters,
            "segments": self.segments,
        })
    }

    /// `spool verify`'s lines: one per segment, the checkpoint if lost, a summary.
    pub fn verify(&self) -> Verdict {
        let mut lines = Vec::new();
        for s in &self.segments {
            let state = if s.torn_bytes > 0 || s.corrupt_regions > 0 {
                "DAMAGED"
            } else {
                "ok"
            };
            lines.push(format!(
                "{state:8} {} records {}..{} bytes {} torn_bytes {} corrupt_regions {}",
                s.file,
                s.first_seq,
                s.last_seq.map_or("-".to_owned(), |l| l.to_string()),
                s.bytes,
                s.torn_bytes,
                s.corrupt_regions
            ));
        }
        if self.checkpoint_lost {
            lines.push(
                "DAMAGED  acked (checkpoint unreadable: every stored event will be sent again)"
                    .to_owned(),
            );
        }
        let damaged = self.damaged();
        let ok = damaged.is_empty() && !self.checkpoint_lost;
        if ok {
            lines.push(format!(
                "spool verify: {} segment(s), {} pending event(s), all checksums ok",
                self.segments.len(),
                self.pending()
            ));
        } else {
            lines.push(format!(
                "spool verify: {} damaged segment(s); the bridge cuts torn tails and skips damaged records at start",
                damaged.len()
            ));
        }
        Verdict { lines, ok }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first_seq: u64, torn_bytes: u64, corrupt_regions: u64) -> SegmentReport {
        SegmentReport {
            file: format!("{first_seq:020}.seg"),
            first_seq,
            last_seq: Some(first_seq + 1),
            bytes: 100,
            pending: 2,
            torn_bytes,
            corrupt_regions,
        }
    }

    #[test]
    fn verify_passes_only_a_sound_spool_and_names_each_damage() {
        let sound = Survey {
            watermark: 0,
            checkpoint_lost: false,
            segments: vec![segment(1, 0, 0), segment(3, 0, 0)],
        };
        let v = sound.verify();
        assert!(v.ok);
        assert_eq!(
            v.lines.last().map(String::as_str),
            Some("spool verify: 2 segment(s), 4 pending event(s), all checksums ok")
        );

        let torn = Survey {
            segments: vec![segment(1, 0, 1), segment(3, 7, 0)],
            ..sound.clone()
        };
        let v = torn.verify();
        assert!(!v.ok);
        assert!(v.lines[0].starts_with("DAMAGED  00000000000000000001.seg records 1..2"));
        assert!(v.lines[1].ends_with("torn_bytes 7 corrupt_regions 0"));
        assert!(v.lines[2].starts_with("spool verify: 2 damaged segment(s);"));

        let lost = Survey {
            checkpoint_lost: true,
            ..sound
        };
        let v = lost.verify();
        assert!(!v.ok);
        assert!(v.lines[2].starts_with("DAMAGED  acked (checkpoint unreadable"));
        assert!(v.lines[3].starts_with("spool verify: 0 damaged segment(s);"));
    }
}
