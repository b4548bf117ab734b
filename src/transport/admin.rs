//! The admin listener: `/metrics`, `/livez`, `/readyz`, and in `--dev` mode
//! `/dev/kafka` (how `tail` finds the embedded broker). Never on the webhook
//! port, so metrics and health are not exposed where the internet calls.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::Registry;
use serde_json::json;

use crate::health::Health;
use crate::ingress::reply::json_response;
use crate::server::{Handler, RequestMeta};

pub const DEV_DISCOVERY_PATH: &str = "/dev/kafka";

pub struct Admin {
    registry: Registry,
    health: Arc<Health>,
}

impl Admin {
    pub fn new(registry: Registry, health: Arc<Health>) -> Self {
        Self { registry, health }
    }
}

impl Handler for Admin {
    async fn handle(&self, req: Request<Incoming>, _meta: &RequestMeta) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method_not_allowed"}),
            );
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match req.uri().path() {
            "/metrics" => {
                // Readiness depends on the store's levels: computed at scrape time.
                self.health.refresh();
                let mut r = Response::new(Full::new(Bytes::from(crate::metrics::render(
                    &self.registry,
                ))));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            "/livez" => json_response(StatusCode::OK, json!({"status": "alive"})),
            "/readyz" => {
                let status = if self.health.refresh() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, self.health.report())
            }
            DEV_DISCOVERY_PATH => match self.health.dev() {
                Some(dev) => json_response(
                    StatusCode::OK,
                    json!({"bootstrap": dev.bootstrap, "topic": dev.topic, "warning": crate::health::DEV_WARNING}),
                ),
                None => json_response(StatusCode::NOT_FOUND, json!({"error": "not_dev_mode"})),
            },
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
        }
    }
}
