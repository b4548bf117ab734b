//! Fuzz target: the whole request path.
//!
//! The input is what a client sends on one connection: arbitrary bytes fed
//! through an in-memory duplex pipe into hyper-util's HTTP/1.1 + h2c server
//! (configured like `server::serve`) running the real `ingress::Webhook` in
//! front of an always-OK sink. Nothing may panic, the connection must end,
//! no answer may be a 5xx (neither the handler's nor hyper's own), and every
//! accepted record must carry a JSON envelope keyed by its phone.
#![no_main]

#[path = "../../tests/connection_support/mod.rs"]
mod connection_support;

use std::sync::OnceLock;
use std::time::Duration;

use connection_support::{exchange, five_xx_on_the_wire};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let out = runtime().block_on(exchange(data, Duration::from_secs(10)));
    if let Some(i) = five_xx_on_the_wire(&out) {
        panic!(
            "5xx on the wire at byte {i}: {}",
            String::from_utf8_lossy(&out)
        );
    }
});
