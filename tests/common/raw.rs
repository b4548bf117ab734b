//! HTTP/1.1 spoken by hand over a socket: responses read off the wire one
//! at a time, and the wait for the server to close the connection.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::HANG;

/// One parsed HTTP/1.1 response: status and lower-cased head.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
}

impl Raw {
    /// Whether the response says `connection: close`.
    pub fn closes(&self) -> bool {
        self.head
            .lines()
            .any(|l| l.starts_with("connection:") && l.contains("close"))
    }
}

/// Reads one response off `s`, keeping what follows it in `buf`; `None` if
/// the server closes first. `HANG` guards a server that neither answers nor
/// closes.
pub async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Raw> {
    let deadline = std::time::Instant::now() + HANG;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return Some(Raw {
                    status: head[9..12].parse().unwrap(),
                    head,
                });
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => panic!("no response: the server hangs"),
        }
    }
}

/// Reads `n` responses off `s`; fewer if the server closes first.
pub async fn read_responses(s: &mut TcpStream, n: usize) -> Vec<Raw> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        match read_response(s, &mut buf).await {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

/// Waits for the server to close `s` with nothing more sent (`HANG` guards
/// a server that keeps it open).
pub async fn assert_closed(s: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(HANG, s.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "unexpected bytes after the last answer: {:?}",
            String::from_utf8_lossy(&chunk[..n])
        ),
        Err(_) => panic!("the server kept the connection open"),
    }
}
