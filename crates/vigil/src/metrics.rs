//! The Prometheus endpoint: `GET /metrics` answers the process's registry, rendered.
//! hyper serves it (HTTP/1.1) on a runtime thread of its own. Connections are served
//! side by side, at most [`MAX_CONNECTIONS`] at once (more are closed at once); a
//! request's head must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`]; a
//! connection lives at most [`CONNECTION_TIMEOUT`]. A slow or hostile client holds one
//! slot for a few seconds, never the endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
pub use vigil_pipeline::metrics::Metrics;

/// Connections served at once; Prometheus holds one per scrape.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a request's line and headers may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest request head read (hyper's smallest buffer).
pub const MAX_HEAD_BYTES: usize = 8192;
/// How long one connection may last, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves `metrics` at `/metrics`; returns the bound address.
pub fn serve(addr: &str, metrics: Metrics) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot serve metrics on {addr} (in use? give another --metrics-addr HOST:PORT)"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("metrics runtime")?;
    std::thread::Builder::new().name("vigil-metrics".into()).spawn(move || rt.block_on(accept(listener, metrics)))?;
    tracing::info!(%bound, "serving Prometheus metrics at /metrics");
    Ok(bound)
}

async fn accept(listener: std::net::TcpListener, metrics: Metrics) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: every connection slot busy; closed");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let body = respond(&req, &metrics);
                async move { Ok::<_, Infallible>(body) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                tracing::debug!(error = %e, "metrics request");
            }
            drop(slot);
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.render()),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "not found: metrics are at /metrics\n".to_string()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(request).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    /// Clients that send half a request, or one too big, hold nothing: a scrape beside
    /// them is answered at once, the slow ones are cut off after the head timeout.
    #[test]
    fn slow_and_oversized_clients_do_not_hold_the_endpoint() {
        let m = Metrics::install(&[]).unwrap();
        ::metrics::gauge!("vigil_up").set(1.0);
        let addr = serve("127.0.0.1:0", m).unwrap();
        let mut slow: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for s in &mut slow {
            s.write_all(b"GET /metr").unwrap();
        }
        let started = Instant::now();
        let answer = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.trim_end().ends_with("vigil_up 1"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2), "answered beside slow clients");
        let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 << 10));
        let answer = get(addr, huge.as_bytes());
        assert!(!answer.contains("vigil_up"), "an oversized head is refused: {answer}");
        assert!(get(addr, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 405"));
        // The half requests are closed once the head timeout passes.
        for s in &mut slow {
            s.set_read_timeout(Some(HEAD_TIMEOUT + Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
        assert!(started.elapsed() < HEAD_TIMEOUT + Duration::from_secs(4), "{:?}", started.elapsed());
    }

    /// The client: one byte every 4 s. `curl` beside it gets `/metrics` within
    /// its 1 s limit, again and again while the trickle goes on.
    #[test]
    fn a_client_sending_a_byte_every_4_s_does_not_hold_curl() {
        let m = Metrics::install(&[]).unwrap();
        ::metrics::gauge!("vigil_up").set(1.0);
        let addr = serve("127.0.0.1:0", m).unwrap();
        let trickle = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            for b in b"GET /metrics HTTP/1.1\r\n" {
                if c.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(4));
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..6 {
            let started = Instant::now();
            let out = std::process::Command::new("curl")
                .args(["-s", "--max-time", "1", &format!("http://{addr}/metrics")])
                .output()
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && body.contains("vigil_up 1"), "curl: {:?} {body}", out.status);
            assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
            std::thread::sleep(Duration::from_millis(1500));
        }
        drop(trickle);
    }
}
