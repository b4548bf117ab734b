//! Log setup through `tracing`: logfmt text or JSON lines on stderr (stdout
//! belongs to `tail` and `check-config` output). `log.level` is an `EnvFilter`
//! directive; `RUST_LOG`, when set, wins. Callers mask phones (`Phone::masked`)
//! and never pass tokens or query strings.
//!
//! This module owns two promises:
//! - **Logging never kills the process.** Lines go to stderr through
//!   [`StderrLines`], which drops a line that cannot be written (a closed pipe,
//!   `EPIPE`; a full non-blocking pipe, `EAGAIN`; any other error) and counts it
//!   in [`lines_dropped`], exposed as `presence_bridge_log_lines_dropped_total`.
//!   `tracing-subscriber`'s own error report (an `eprintln!`, which panics on a
//!   closed stderr) is switched off. Rust ignores `SIGPIPE` in its binaries, so a
//!   closed stderr is an `EPIPE` error, not a signal.
//! - **Text lines are valid logfmt** ([`Logfmt`]): `ts=… level=… msg="…"`
//!   then the event's fields as `key=value`, a value quoted when it is empty or
//!   holds a space, `=`, `"`, `\` or a control character, with `\"`, `\\`,
//!   `\n`, `\r`, `\t` and `\u00XX` escapes (the escapes `go-logfmt`, and so
//!   Loki and Grafana, read). A line is always exactly one line.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Log lines that could not be written to stderr since the process started.
static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped because stderr could not take them
/// (`presence_bridge_log_lines_dropped_total`).
pub fn lines_dropped() -> u64 {
    LINES_DROPPED.load(Ordering::Relaxed)
}

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrLines)
        .log_internal_errors(false)
        .with_ansi(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .event_format(Logfmt)
            .fmt_fields(LogfmtFields)
            .try_init(),
    };
}

/// A [`MakeWriter`] for stderr that never fails and never blocks on an error:
/// a line that cannot be written whole is dropped and counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLines;

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = StderrLines;
    fn make_writer(&'a self) -> Self::Writer {
        StderrLines
    }
}

impl io::Write for StderrLines {
    /// `tracing-subscriber` hands over one whole formatted line per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_or_drop(&mut io::stderr().lock(), buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `line` whole, or counts it as dropped. Never returns an error.
pub fn write_or_drop(out: &mut impl io::Write, line: &[u8]) {
    if out.write_all(line).is_err() {
        LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The text format: one logfmt line per event (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        write!(
            writer,
            "ts={:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z level={}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.microsecond(),
            event.metadata().level().as_str().to_ascii_lowercase(),
        )?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        writer.write_str(" msg=")?;
        write_value(&mut writer, fields.message.as_deref().unwrap_or(""))?;
        writer.write_str(&fields.rest)?;
        // Fields of the enclosing spans, outermost first, already logfmt.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>() {
                    if !f.is_empty() {
                        writer.write_char(' ')?;
                        writer.write_str(f)?;
                    }
                }
            }
        }
        writer.write_char('\n')
    }
}

/// Span fields as logfmt pairs, so that [`Logfmt`] can append them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogfmtFields;

impl<'writer> FormatFields<'writer> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut v = Fields::default();
        fields.record(&mut v);
        if let Some(m) = v.message {
            v.rest.insert_str(0, &pair("msg", &m));
        }
        writer.write_str(v.rest.trim_start())
    }
}

/// Collects an event's fields: the message apart, the rest as ` key=value`.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: String,
}

impl Fields {
    fn push(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            // `tracing-log` metadata, already in the line's own keys.
            name if name.starts_with("log.") => {}
            name => self.rest.push_str(&pair(name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, &value.to_string());
    }
}

/// ` key=value`, the key cleaned of characters a logfmt key cannot hold.
fn pair(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 4);
    out.push(' ');
    let before = out.len();
    out.extend(key.chars().filter(|c| !needs_quotes(*c)));
    if out.len() == before {
        out.push('_');
    }
    out.push('=');
    let _ = write_value(&mut out, value);
    out
}

fn needs_quotes(c: char) -> bool {
    c <= ' ' || c == '=' || c == '"' || c == '\\' || c.is_control() || c.is_whitespace()
}

/// Writes a logfmt value: bare when it can be, else quoted and escaped.
pub fn write_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    if !value.is_empty() && !value.chars().any(needs_quotes) {
        return out.write_str(value);
    }
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                // Every control character is at most U+009F: four hex digits.
                write!(out, "\\u{:04x}", u32::from(c))?
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bare_only_when_safe() {
        let cases = [
            ("plain", "plain"),
            ("", r#""""#),
            ("a b", r#""a b""#),
            ("k=v", r#""k=v""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"C:\dir", r#""C:\\dir""#),
            ("two\nlines", r#""two\nlines""#),
            ("\u{1b}[31mred", r#""\u001b[31mred""#),
            ("nbsp\u{a0}here", "\"nbsp\u{a0}here\""),
            ("ünïcödé", "ünïcödé"),
        ];
        for (raw, want) in cases {
            let mut out = String::new();
            write_value(&mut out, raw).unwrap();
            assert_eq!(out, want, "{raw:?}");
        }
    }

    #[test]
    fn keys_lose_what_a_key_cannot_hold() {
        assert_eq!(pair("a b=\"c", "1"), " abc=1");
        assert_eq!(pair("=", "1"), " _=1");
    }

    struct Broken;
    impl io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_that_cannot_be_written_is_counted() {
        let before = lines_dropped();
        write_or_drop(&mut Broken, b"line\n");
        assert!(lines_dropped() > before);
    }
}
