//! Process-wide series: CPU (at one clock tick's resolution), memory, file
//! descriptors and threads; the build; and the log lines dropped or
//! suppressed, counted by logging before any registry exists and read at
//! each scrape.

use prometheus::{IntCounterVec, Opts};

use super::NS;

/// A counter kept outside any registry (by logging, which starts before one
/// exists) and read at scrape time: `read` gives the total per label value
/// (`label` None: one unlabelled total).
pub(super) struct ScrapedCounter {
    opts: Opts,
    label: Option<&'static str>,
    read: fn() -> Vec<(&'static str, u64)>,
    template: IntCounterVec,
}

impl ScrapedCounter {
    fn new(
        opts: Opts,
        label: Option<&'static str>,
        read: fn() -> Vec<(&'static str, u64)>,
    ) -> Result<Self, prometheus::Error> {
        let opts = opts.namespace(NS);
        let template = IntCounterVec::new(opts.clone(), label.as_slice())?;
        Ok(Self {
            opts,
            label,
            read,
            template,
        })
    }

    /// `presence_bridge_log_lines_dropped_total`, from [`crate::logging::lines_dropped`].
    pub(super) fn log_lines_dropped() -> Result<Self, prometheus::Error> {
        Self::new(
            Opts::new(
                "log_lines_dropped_total",
                "Log lines dropped because stderr could not take them (closed or full pipe).",
            ),
            None,
            || vec![("", crate::logging::lines_dropped())],
        )
    }

    /// `presence_bridge_log_lines_suppressed_total{reason}`, from the
    /// process-wide [`crate::lograte::global`] limiter.
    pub(super) fn log_lines_suppressed() -> Result<Self, prometheus::Error> {
        Self::new(
            Opts::new(
                "log_lines_suppressed_total",
                "Log lines not written because their reason was over its quota for the interval \
                 (rejections, refused connections); each interval's count is in a `log lines \
                 suppressed` summary line. By reason (rejection codes, connection reasons, other).",
            ),
            Some("reason"),
            || crate::lograte::global().suppressed_totals().collect(),
        )
    }
}

impl prometheus::core::Collector for ScrapedCounter {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(now) = IntCounterVec::new(self.opts.clone(), self.label.as_slice()) else {
            return Vec::new();
        };
        for (value, n) in (self.read)() {
            let values: &[&str] = if self.label.is_some() { &[value] } else { &[] };
            now.with_label_values(values).inc_by(n);
        }
        now.collect()
    }
}

/// The process metrics of `prometheus`' `ProcessCollector` (memory, file
/// descriptors, threads, start time), except `process_cpu_seconds_total`:
/// that crate counts it in whole seconds (an integer counter), so a bridge
/// that used 0.63 s showed 0 and `rate()` was a staircase. This one reads the
/// same source (`utime + stime` of `/proc/self/stat`, every thread, living or
/// ended) divided by the kernel's clock tick rate (`AT_CLKTCK`, usually
/// 100 Hz): a resolution of one tick, 10 ms.
#[cfg(target_os = "linux")]
pub(super) struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    cpu: prometheus::Counter,
    ticks_per_second: f64,
}

#[cfg(target_os = "linux")]
const CPU_SECONDS: &str = "process_cpu_seconds_total";

#[cfg(target_os = "linux")]
impl ProcessMetrics {
    pub(super) fn for_self() -> Result<Self, prometheus::Error> {
        let cpu = prometheus::Counter::with_opts(Opts::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds (every thread; resolution: one clock tick, 10 ms).",
        ))?;
        Ok(Self {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            cpu,
            ticks_per_second: clock_ticks_per_second().unwrap_or(100.0),
        })
    }
}

#[cfg(target_os = "linux")]
impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs: Vec<&prometheus::core::Desc> = self
            .inner
            .desc()
            .into_iter()
            .filter(|d| d.fq_name != CPU_SECONDS)
            .collect();
        descs.extend(self.cpu.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families: Vec<_> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU_SECONDS)
            .collect();
        if let Some(ticks) = process_cpu_ticks() {
            let delta = ticks / self.ticks_per_second - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        families.extend(self.cpu.collect());
        families
    }
}

/// User plus system CPU time of this process (every thread, living or
/// ended), in clock ticks, from `/proc/self/stat`.
#[cfg(target_os = "linux")]
pub fn process_cpu_ticks() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64)
}

/// The kernel's clock tick rate (`AT_CLKTCK` of `/proc/self/auxv`), which
/// `/proc/self/stat` counts CPU time in.
#[cfg(target_os = "linux")]
pub fn clock_ticks_per_second() -> Option<f64> {
    const AT_CLKTCK: u64 = 17;
    let auxv = std::fs::read("/proc/self/auxv").ok()?;
    let word = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * word).find_map(|pair| {
        let read = |b: &[u8]| -> u64 {
            let mut buf = [0u8; 8];
            buf[..word].copy_from_slice(b);
            u64::from_ne_bytes(buf)
        };
        (read(&pair[..word]) == AT_CLKTCK).then(|| read(&pair[word..]) as f64)
    })
}
