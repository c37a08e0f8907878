//! A minimal Prometheus endpoint: `GET /metrics` answers the latest text a process
//! rendered (plain HTTP/1.1, one request per connection, on its own thread).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::Context;
pub use vigil_pipeline::metrics::MetricsText;

/// Binds `addr` and serves `text` at `/metrics`; returns the bound address.
pub fn serve(addr: &str, text: MetricsText) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot serve metrics on {addr} (in use? give another --metrics-addr HOST:PORT)"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("vigil-metrics".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            if let Err(e) = answer(conn, &text) {
                tracing::debug!(error = %e, "metrics request");
            }
        }
    })?;
    tracing::info!(%bound, "serving Prometheus metrics at /metrics");
    Ok(bound)
}

fn answer(conn: TcpStream, text: &MetricsText) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", text.get())
    } else {
        ("404 Not Found", "not found: metrics are at /metrics\n".to_string())
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
