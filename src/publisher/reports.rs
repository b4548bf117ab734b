//! Delivery reports served on the async runtime, without a polling thread.
//!
//! rdkafka's `FutureProducer` polls librdkafka from a thread of its own and
//! hands each report over through a oneshot channel allocated per record:
//! per delivery batch, librdkafka's broker thread wakes that thread, which
//! wakes the forwarder's task, and every record costs two allocations freed
//! on another thread. Here the producer is a `BaseProducer` whose delivery
//! opaque is a number ([`Reports::register`]); librdkafka writes a byte to a
//! socket whenever its main queue goes from empty to non-empty
//! (`rd_kafka_queue_io_event_enable`), and one task of the runtime ([`pump`])
//! waits for that byte, serves the queue until it is empty (delivery reports,
//! errors, statistics, logs) and wakes whoever waits for a finished record.
//!
//! Data flows one way: [`Reports::register`] when a record is handed over,
//! [`Reports::finish`] from the delivery callback, [`RdDelivery`] takes the
//! result (or forgets the slot if dropped first). The table holds at most
//! one slot per record handed to librdkafka and not yet awaited, which the
//! forwarder's window bounds.

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use rdkafka::ClientContext;

use super::BridgeContext;

/// The results of the records handed to librdkafka, by token.
#[derive(Default)]
pub struct Reports {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: usize,
    slots: HashMap<usize, Slot>,
}

enum Slot {
    /// No result yet; the waker of whoever waits for it.
    Pending(Option<Waker>),
    Done(Result<(), KafkaError>),
}

impl Reports {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a record about to be handed over; its token is the
    /// record's delivery opaque.
    pub fn register(&self) -> usize {
        let mut t = self.lock();
        t.next = t.next.wrapping_add(1);
        let token = t.next;
        t.slots.insert(token, Slot::Pending(None));
        token
    }

    /// The record's result (from the delivery callback).
    pub fn finish(&self, token: usize, result: Result<(), KafkaError>) {
        let waker = {
            let mut t = self.lock();
            match t.slots.get_mut(&token) {
                // Its waiter is gone: nobody will take the result.
                None => return,
                Some(slot) => match std::mem::replace(slot, Slot::Done(result)) {
                    Slot::Pending(w) => w,
                    Slot::Done(_) => None,
                },
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the record's result once there, or keeps `cx`'s waker.
    fn poll(&self, token: usize, cx: &mut Context<'_>) -> Poll<Result<(), KafkaError>> {
        let mut t = self.lock();
        match t.slots.get_mut(&token) {
            Some(Slot::Pending(w)) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Some(Slot::Done(_)) | None => match t.slots.remove(&token) {
                Some(Slot::Done(r)) => Poll::Ready(r),
                // Never registered, or taken already: the result is lost.
                _ => Poll::Ready(Err(KafkaError::Canceled)),
            },
        }
    }

    /// Drops the slot of a record nobody waits for any more.
    pub fn forget(&self, token: usize) {
        self.lock().slots.remove(&token);
    }

    /// Fails every record still without a result: its producer is gone, no
    /// report will come (a waiter never hangs on a dropped producer).
    fn cancel_all(&self) {
        let wakers: Vec<Waker> = {
            let mut t = self.lock();
            t.slots
                .values_mut()
                .filter_map(|slot| match slot {
                    Slot::Pending(w) => {
                        let w = w.take();
                        *slot = Slot::Done(Err(KafkaError::Canceled));
                        w
                    }
                    Slot::Done(_) => None,
                })
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Slots held (records handed over whose result was not taken).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves with the broker's answer for one record: `Ok` once acknowledged,
/// the client's error otherwise ([`KafkaError::Canceled`] when the result
/// was lost).
pub struct RdDelivery {
    reports: Arc<Reports>,
    token: usize,
    taken: bool,
}

impl RdDelivery {
    pub fn new(reports: Arc<Reports>, token: usize) -> Self {
        Self {
            reports,
            token,
            taken: false,
        }
    }
}

impl Future for RdDelivery {
    type Output = Result<(), KafkaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.taken {
            return Poll::Ready(Err(KafkaError::Canceled));
        }
        let r = self.reports.poll(self.token, cx);
        if r.is_ready() {
            self.taken = true;
        }
        r
    }
}

impl Drop for RdDelivery {
    fn drop(&mut self) {
        if !self.taken {
            self.reports.forget(self.token);
        }
    }
}

/// The producer's context: the bridge's (logs, statistics, errors) and the
/// delivery reports into [`Reports`].
pub struct ReportContext {
    inner: BridgeContext,
    reports: Arc<Reports>,
}

impl ReportContext {
    pub fn new(inner: BridgeContext) -> Self {
        Self {
            inner,
            reports: Arc::default(),
        }
    }
}

impl ClientContext for ReportContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message)
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        self.inner.stats(stats)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason)
    }
}

impl ProducerContext for ReportContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        self.reports.finish(token, result);
    }
}

/// The producer with its main queue's wake-up socket. Dropped in field
/// order: the wake-up is turned off before the client goes, and the socket
/// closes (ending [`pump`]) after it.
pub struct Served {
    queue: MainQueue,
    pub(super) producer: BaseProducer<ReportContext>,
    _wake_tx: StdUnixStream,
}

impl Drop for Served {
    fn drop(&mut self) {
        // What the client still holds gets no report once it is gone.
        self.reports().cancel_all();
    }
}

/// A handle on librdkafka's main queue with its IO event enabled.
struct MainQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queue handles are thread-safe; the pointer is only
// used for `rd_kafka_queue_length` and destroyed once, on drop.
unsafe impl Send for MainQueue {}
unsafe impl Sync for MainQueue {}

impl MainQueue {
    fn len(&self) -> usize {
        // SAFETY: a live handle from `rd_kafka_queue_get_main`.
        unsafe { rdsys::rd_kafka_queue_length(self.0) }
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: a live handle; -1 turns the IO event off before the fd closes.
        unsafe {
            rdsys::rd_kafka_queue_io_event_enable(self.0, -1, std::ptr::null(), 0);
            rdsys::rd_kafka_queue_destroy(self.0);
        }
    }
}

/// Why the reports could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no async runtime to serve delivery reports on")]
    NoRuntime,
    #[error("cannot create the delivery-report wake-up socket: {0}")]
    Socket(#[from] std::io::Error),
}

impl Served {
    /// Turns the main queue's wake-up on and starts [`pump`] on the current
    /// runtime.
    pub fn start(producer: BaseProducer<ReportContext>) -> Result<Arc<Self>, ServeError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ServeError::NoRuntime)?;
        let (wake_tx, wake_rx) = StdUnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let wake_rx = {
            let _enter = handle.enter();
            tokio::net::UnixStream::from_std(wake_rx)?
        };
        use rdkafka::producer::Producer;
        // SAFETY: a live client; the handle is destroyed by `MainQueue`'s drop,
        // which turns the IO event off first, before `wake_tx` closes.
        let queue = unsafe {
            let q = rdsys::rd_kafka_queue_get_main(producer.client().native_ptr());
            const BYTE: [u8; 1] = [1];
            rdsys::rd_kafka_queue_io_event_enable(
                q,
                wake_tx.as_raw_fd(),
                BYTE.as_ptr().cast(),
                BYTE.len(),
            );
            MainQueue(q)
        };
        let served = Arc::new(Self {
            queue,
            producer,
            _wake_tx: wake_tx,
        });
        handle.spawn(pump(Arc::downgrade(&served), wake_rx));
        Ok(served)
    }

    fn reports(&self) -> &Arc<Reports> {
        use rdkafka::producer::Producer;
        &self.producer.context().reports
    }

    /// Hands `record` to librdkafka; the delivery resolves with the broker's
    /// answer. `Err` when it was refused before it was queued.
    pub fn enqueue(&self, record: BaseRecord<'_, str, [u8]>) -> Result<RdDelivery, KafkaError> {
        let reports = self.reports();
        let token = reports.register();
        let record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: token,
        };
        match self.producer.send(record) {
            Ok(()) => Ok(RdDelivery::new(reports.clone(), token)),
            Err((e, _)) => {
                reports.forget(token);
                Err(e)
            }
        }
    }

    /// Serves every event in the main queue (delivery reports among them).
    fn serve(&self) {
        while self.queue.len() > 0 {
            self.producer.poll(Duration::ZERO);
        }
    }
}

/// Serves the producer's main queue each time librdkafka says it has
/// something, until the producer is dropped (its socket closes).
async fn pump(served: Weak<Served>, wake: tokio::net::UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        // Drain the socket first: a byte written while serving stays for the
        // next round instead of being lost behind it.
        loop {
            match wake.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
        match served.upgrade() {
            Some(s) => s.serve(),
            None => return,
        }
        if wake.readable().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_now(d: &mut RdDelivery) -> Poll<Result<(), KafkaError>> {
        Pin::new(d).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_result_reaches_its_delivery_once_and_the_table_empties() {
        let reports = Arc::new(Reports::default());
        let (a, b) = (reports.register(), reports.register());
        assert_ne!(a, b);
        let mut da = RdDelivery::new(reports.clone(), a);
        let mut db = RdDelivery::new(reports.clone(), b);
        assert!(poll_now(&mut da).is_pending());
        reports.finish(b, Err(KafkaError::Canceled));
        reports.finish(a, Ok(()));
        assert!(matches!(poll_now(&mut da), Poll::Ready(Ok(()))));
        assert!(matches!(
            poll_now(&mut db),
            Poll::Ready(Err(KafkaError::Canceled))
        ));
        assert!(reports.is_empty());
    }

    #[test]
    fn a_dropped_delivery_frees_its_slot_and_a_late_result_is_ignored() {
        let reports = Arc::new(Reports::default());
        let t = reports.register();
        drop(RdDelivery::new(reports.clone(), t));
        assert!(reports.is_empty());
        reports.finish(t, Ok(()));
        assert!(reports.is_empty(), "a result nobody waits for is not kept");
    }

    #[tokio::test]
    async fn records_pending_when_the_producer_goes_fail_instead_of_hanging() {
        let producer: BaseProducer<ReportContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(ReportContext::new(BridgeContext::new(
                super::super::Scrubber::default(),
            )))
            .unwrap();
        let served = Served::start(producer).unwrap();
        let reports = served.reports().clone();
        let token = reports.register();
        let delivery = RdDelivery::new(reports.clone(), token);
        drop(served);
        let result = tokio::time::timeout(Duration::from_secs(60), delivery)
            .await
            .expect("a delivery of a dropped producer never resolved");
        assert!(matches!(result, Err(KafkaError::Canceled)), "{result:?}");
        assert!(reports.is_empty());
    }

    #[test]
    fn finishing_wakes_the_waiter() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let reports = Arc::new(Reports::default());
        let t = reports.register();
        let mut d = RdDelivery::new(reports.clone(), t);
        assert!(Pin::new(&mut d)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        reports.finish(t, Ok(()));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
