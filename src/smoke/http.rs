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

/// Asked every few seconds while a response is awaited: `Some(why)` ends the wait.
pub type Watch<'a> = &'a dyn Fn() -> Option<String>;

fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    watch: Option<Watch<'_>>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    // Short read timeouts so Ctrl-C is noticed while the server generates; generation on
    // lavapipe can take minutes, so the overall limit is long.
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut next_watch = Instant::now() + Duration::from_secs(5);
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
                if let Some(w) = watch.filter(|_| Instant::now() > next_watch) {
                    next_watch = Instant::now() + Duration::from_secs(5);
                    if let Some(why) = w() {
                        return Err(why);
                    }
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
    request(addr, "GET", path, None, None)
}

/// POST, giving up early when `watch` says the answer will not come.
pub fn post(addr: &str, path: &str, body: &str, watch: Watch<'_>) -> Result<(u16, String), String> {
    request(addr, "POST", path, Some(body), Some(watch))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts and never answers: the watch ends the wait, not the 15 minutes.
    #[test]
    fn a_watch_that_sees_a_dead_runner_ends_the_wait() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let _hold = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(30));
            drop(s);
        });
        let asked = std::cell::Cell::new(0);
        let watch = || {
            asked.set(asked.get() + 1);
            (asked.get() >= 2).then(|| "runner died".to_string())
        };
        let t = Instant::now();
        let r = post(&addr, "/api/generate", "{}", &watch);
        assert_eq!(r, Err("runner died".to_string()));
        assert_eq!(asked.get(), 2);
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }
}
