//! A minimal HTTP/1.1 client for the server on loopback (one request per connection):
//! enough for Ollama's JSON API, without a dependency.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Reads give up within a second of Ctrl-C (the handler sets the flag).
fn interrupted() -> bool {
    super::INTERRUPTED.load(Ordering::SeqCst)
}

fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    // Short read timeouts so Ctrl-C is noticed while the server generates; generation on
    // lavapipe can take minutes, so the overall limit is long.
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if interrupted() {
                    return Err("interrupted".into());
                }
                if Instant::now() > deadline {
                    return Err("no response within 15 minutes".into());
                }
            }
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    ))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    request(addr, "GET", path, None)
}

pub fn post(addr: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    request(addr, "POST", path, Some(body))
}
