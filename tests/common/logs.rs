//! Log capture: a writer that keeps every byte it is given, for a tracing
//! subscriber under test, and a process-wide JSON subscriber writing to one.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// Every byte written, shared by its clones.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Bytes written so far (a mark for [`Self::since`]).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The bytes written after `mark`.
    pub fn since(&self, mark: usize) -> Vec<u8> {
        self.0.lock().unwrap()[mark..].to_vec()
    }

    /// What was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The process's global subscriber (installed at the first call): JSON
/// lines, flattened, `presence_bridge=debug`, into the returned capture. A
/// test binary that uses it has it for all its tests.
pub fn global_json() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_env_filter(tracing_subscriber::EnvFilter::new("presence_bridge=debug"))
                .with_writer(capture.clone())
                .init();
            capture
        })
        .clone()
}
