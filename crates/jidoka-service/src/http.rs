//! The HTTP listener: HTTP/1.1 connections served with the limits a plant LAN needs, where any
//! tablet, line PC or scanner can reach the port.
//!
//! - **Connections are capped** in total and per peer address. A connection over a cap is
//!   closed as soon as it is accepted, so idle or hostile sockets cannot use up the process's
//!   file descriptors (the store, the sources and `/health` keep theirs).
//! - **Idle and slow headers time out** ([`HttpLimits::idle_timeout`]): a connection that sends
//!   no complete request head within it, first or between keep-alive requests, is closed.
//! - **Slow requests time out** ([`HttpLimits::request_timeout`]): a request whose body has not
//!   arrived, or whose answer has not started, in that time is answered 408 and its connection
//!   closed. Streamed answers (the live dashboard) are not cut: the limit covers the request up
//!   to the response head.
//! - The peer address is put in the request as axum's `ConnectInfo<SocketAddr>`.
//!
//! Graceful shutdown: when `shutdown` completes, no new connection is accepted, idle ones are
//! closed and in-flight requests finish; [`serve`] returns when the last connection is gone.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What one listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at once, all peers together.
    pub max_connections: usize,
    /// Open connections at once from one peer address.
    pub max_connections_per_peer: usize,
    /// A connection must send a complete request head within this time, the first one and each
    /// later one on a kept-alive connection, or it is closed.
    pub idle_timeout: Duration,
    /// From the request head to the response head: the body must have been read and the
    /// answer started within this time.
    pub request_timeout: Duration,
}

/// Whether a request's `Host` names this service: an IP address, `localhost`, or one of the
/// configured names. Anything else is refused (421), so a web page whose name was made to
/// resolve to the service's address (DNS rebinding) cannot read it from a browser on the line PC.
pub fn host_allowed(host: Option<&str>, names: &[String]) -> bool {
    let Some(host) = host else { return true };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host }),
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 512,
            max_connections_per_peer: 64,
            idle_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl HttpLimits {
    /// The limits with the total cap lowered to fit the process's open-file limit, keeping a
    /// quarter of the descriptors (at least 64) for the store, sources and sinks.
    pub fn fitted_to_open_files(mut self) -> HttpLimits {
        if let Some(soft) = open_files_limit() {
            let reserve = (soft / 4).max(64);
            let room = soft.saturating_sub(reserve).max(16);
            if room < self.max_connections {
                tracing::warn!(
                    open_files = soft,
                    max_connections = room,
                    configured = self.max_connections,
                    "the open-file limit is low: HTTP connections capped lower than configured"
                );
                self.max_connections = room;
            }
        }
        self.max_connections_per_peer = self.max_connections_per_peer.min(self.max_connections);
        self
    }
}

/// The soft limit on open files, where the system tells it (`/proc/self/limits` on Linux).
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open connections per peer, and in total.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// A connection's place under the caps; given back when the connection ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&self.peer);
            }
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    Peer,
}

fn take_slot(counts: &Arc<Mutex<Counts>>, peer: IpAddr, limits: &HttpLimits) -> Result<Slot, Refusal> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    if c.total >= limits.max_connections {
        return Err(Refusal::Total);
    }
    let n = c.per_peer.entry(peer).or_insert(0);
    if *n >= limits.max_connections_per_peer {
        return Err(Refusal::Peer);
    }
    *n += 1;
    c.total += 1;
    Ok(Slot { counts: counts.clone(), peer })
}

/// Counters of what the listener turned away, for `/metrics` and the logs.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub refused_total_cap: std::sync::atomic::AtomicU64,
    pub refused_peer_cap: std::sync::atomic::AtomicU64,
    pub request_timeouts: std::sync::atomic::AtomicU64,
    pub accept_errors: std::sync::atomic::AtomicU64,
    pub tls_handshake_failures: std::sync::atomic::AtomicU64,
}

/// Serve `app` on `listener` under `limits` until `shutdown` completes and every connection
/// has ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, limits, metrics, None, Arc::from(Vec::new()), shutdown).await
}

/// [`serve`], over TLS when `tls` is given: the handshake must finish within the idle timeout.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<crate::metrics::Metrics>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    hosts: Arc<[String]>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let counts = Arc::new(Mutex::new(Counts::default()));
    let stats = &metrics.http;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop_accepting = stop_rx.clone();
    let mut last_error_log: Option<Instant> = None;
    let mut last_refusal_log: Option<Instant> = None;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop_accepting.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(err) => {
                // Out of descriptors or a transient network error: wait a little instead of
                // spinning, and say so at most every ten seconds.
                stats.accept_errors.fetch_add(1, Relaxed);
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %err, "cannot accept a connection; retrying");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match take_slot(&counts, peer.ip(), &limits) {
            Ok(s) => s,
            Err(why) => {
                let counter = match why {
                    Refusal::Total => &stats.refused_total_cap,
                    Refusal::Peer => &stats.refused_peer_cap,
                };
                counter.fetch_add(1, Relaxed);
                if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(peer = %peer.ip(), cap = ?why, "connection refused: too many open connections");
                    last_refusal_log = Some(Instant::now());
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let metrics = metrics.clone();
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        let (tls, hosts) = (tls.clone(), hosts.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, app, peer, limits, metrics, hosts, &mut stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.idle_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, app, peer, limits, metrics, hosts, &mut stop).await,
                    Ok(Err(_)) | Err(_) => {
                        metrics.http.tls_handshake_failures.fetch_add(1, Relaxed);
                    }
                },
            }
            drop(slot);
            drop(done);
        });
    }
    drop(listener);
    drop(done_tx);
    // Every connection task holds a sender; the channel closes when the last one ends.
    let _ = done_rx.recv().await;
    Ok(())
}

/// One connection, plain or TLS, until it ends or the server stops.
async fn connection<S>(
    stream: S,
    app: Router,
    peer: std::net::SocketAddr,
    limits: HttpLimits,
    metrics: Arc<crate::metrics::Metrics>,
    hosts: Arc<[String]>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use std::sync::atomic::Ordering::Relaxed;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let metrics = metrics.clone();
        let host_ok = host_allowed(req.headers().get(axum::http::header::HOST).and_then(|v| v.to_str().ok()), &hosts);
        async move {
            if !host_ok {
                let body = serde_json::json!({"error": {"code": "bad_host", "message": "this service does not answer to that host name; add it to [api] allowed_hosts"}});
                return Ok::<Response, std::convert::Infallible>(
                    (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response(),
                );
            }
            let req = req.map(axum::body::Body::new);
            let response = match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    metrics.http.request_timeouts.fetch_add(1, Relaxed);
                    request_timeout_response()
                }
            };
            Ok::<Response, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout).keep_alive(true);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service).with_upgrades());
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

fn request_timeout_response() -> Response {
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(
            serde_json::json!({"error": {"code": "request_timeout", "message": "the request took too long to arrive"}}),
        ),
    )
        .into_response();
    r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_peer_and_in_total_and_are_given_back() {
        let limits = HttpLimits { max_connections: 3, max_connections_per_peer: 2, ..HttpLimits::default() };
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = take_slot(&counts, a, &limits).unwrap();
        let _a2 = take_slot(&counts, a, &limits).unwrap();
        assert_eq!(take_slot(&counts, a, &limits).err(), Some(Refusal::Peer));
        let _b1 = take_slot(&counts, b, &limits).unwrap();
        assert_eq!(take_slot(&counts, b, &limits).err(), Some(Refusal::Total));
        drop(a1);
        let _b2 = take_slot(&counts, b, &limits).unwrap();
        assert_eq!(counts.lock().unwrap().total, 3);
    }

    #[test]
    fn only_addresses_localhost_and_configured_names_are_answered() {
        let names = vec!["jidoka.plant.local".to_string()];
        for ok in [
            None,
            Some("127.0.0.1:8480"),
            Some("10.0.0.7"),
            Some("[::1]:8480"),
            Some("localhost:8480"),
            Some("JIDOKA.plant.local"),
        ] {
            assert!(host_allowed(ok, &names), "{ok:?}");
        }
        for bad in
            [Some("attacker.example"), Some("attacker.example:8480"), Some("jidoka.plant.local.attacker.example")]
        {
            assert!(!host_allowed(bad, &names), "{bad:?}");
        }
    }

    #[test]
    fn a_low_open_file_limit_lowers_the_total_cap() {
        let limits = HttpLimits { max_connections: 1_000_000, ..HttpLimits::default() }.fitted_to_open_files();
        if let Some(soft) = open_files_limit() {
            assert!(limits.max_connections < soft, "{} connections under {soft} open files", limits.max_connections);
        }
        assert!(limits.max_connections_per_peer <= limits.max_connections);
    }
}
