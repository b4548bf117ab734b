//! Transport: how bytes reach the handlers. [`server`] is the accept loop
//! shared by both listeners (HTTP/1.1 and HTTP/2, connection slots and who
//! gives way under attack, graceful drain), [`tls`] the native HTTPS
//! acceptor and its certificate reloads, [`admin`] the admin listener's
//! handler (`/metrics`, `/livez`, `/readyz`). Nothing here knows Z-API or
//! the spool: the webhook handler ([`crate::ingress`]) is plugged in.

pub mod admin;
pub mod server;
pub mod tls;
