//! The admin endpoint's pages: `/stats` (JSON), `/metrics` (Prometheus
//! text), the status page at `/` with its JSON API `/api/status`, and
//! `POST /api/policy`, which switches the path policy at run time.
//!
//! The page's assets (HTML, CSS, JS with a hand-drawn canvas chart) are
//! compiled in; the page polls `/api/status` once a second and keeps the
//! last five minutes of per-interface throughput itself.
//!
//! A policy switch changes what the host does, so `POST /api/policy` is
//! guarded against requests from other web sites (cross-site request
//! forgery) and DNS rebinding:
//! - it is refused unless the admin endpoint listens on a loopback address
//!   (the endpoint has no authentication);
//! - the request must carry the per-process random token embedded in the
//!   page in `X-Sixpath-Token` (a custom header: a cross-origin page can
//!   neither read the token nor send the header without a CORS preflight,
//!   which this endpoint never grants);
//! - `Origin`, when present, must be this endpoint's own origin, and
//!   `Sec-Fetch-Site`, when present, `same-origin`;
//! - `Host` must be an IP literal or `localhost` (with every request,
//!   `/stats` and `/metrics` included), so a foreign name resolved to
//!   127.0.0.1 gets nothing.
//!
//! Refusals are 403 with the reason.

use std::sync::Arc;

use serde_json::json;
use sixpath_net::admin::{Method, Request, Response, host_ok};

use crate::conn::Shared;
use crate::paths::PathPolicy;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/status.js");
const STYLE: &str = include_str!("web/status.css");

/// The header carrying the page's token.
pub const TOKEN_HEADER: &str = "x-sixpath-token";
/// Connections listed by `/api/status` at most (the newest).
pub const MAX_LISTED: usize = 200;
/// Every policy, in the order the page offers them.
const POLICIES: [PathPolicy; 4] = [
    PathPolicy::Aggregate,
    PathPolicy::Backup,
    PathPolicy::Single,
    PathPolicy::Handover,
];

/// One path in `/api/status`.
#[derive(Debug, serde::Serialize)]
struct PathRow {
    interface: String,
    addresses: Vec<String>,
    endpoint_installed: bool,
    backup: bool,
    health: Option<String>,
    health_since_ms: Option<u64>,
    probe_rtt_us: Option<u64>,
    rtt_us: u32,
    subflows: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// The admin endpoint's state.
#[derive(Debug)]
pub struct Admin {
    shared: Arc<Shared>,
    token: String,
    /// The endpoint listens on a loopback address.
    loopback: bool,
}

impl Admin {
    /// The pages for `shared`, served on `addr`; draws the token.
    pub fn new(shared: Arc<Shared>, addr: std::net::SocketAddr) -> Self {
        let mut raw = [0u8; 16];
        // Without randomness no token is good enough: switching stays off.
        let token = if getrandom::fill(&mut raw).is_ok() {
            raw.iter().fold(String::with_capacity(32), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
        } else {
            String::new()
        };
        Self {
            shared,
            token,
            loopback: addr.ip().is_loopback(),
        }
    }

    /// The token the page carries (for tests).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Why the policy cannot be switched from the page, if it cannot.
    fn switch_refused(&self) -> Option<&'static str> {
        if !self.loopback {
            Some(
                "the admin endpoint is not on a loopback address and has no authentication: policy switching is off",
            )
        } else if self.token.is_empty() {
            Some("no random token could be drawn: policy switching is off")
        } else {
            None
        }
    }

    /// The answer to `req`; `None` is 404 (405 for POST).
    pub fn handle(&self, req: &Request) -> Option<Response> {
        // Every path, `/stats` and `/metrics` too: they name the targets of
        // recent failures and the host's interfaces and addresses, which a
        // foreign page must not read through a name rebound to 127.0.0.1.
        if !host_ok(req.header("host")) {
            return Some(Response::text(
                403,
                "Host must be an IP address or localhost",
            ));
        }
        if req.method == Method::POST {
            return (req.path == "/api/policy").then(|| self.switch(req));
        }
        let shared = &self.shared;
        Some(match req.path.as_str() {
            "/stats" => Response::ok(
                "application/json",
                serde_json::to_string_pretty(&shared.snapshot()).unwrap_or_default() + "\n",
            ),
            "/metrics" => Response::ok(
                "text/plain; version=0.0.4; charset=utf-8",
                shared.snapshot().prometheus(),
            ),
            "/" => Response::page(
                "text/html; charset=utf-8",
                INDEX.replace("{{TOKEN}}", &self.token),
            ),
            "/status.js" => Response::page("text/javascript; charset=utf-8", SCRIPT),
            "/status.css" => Response::page("text/css; charset=utf-8", STYLE),
            "/api/status" => Response::ok("application/json", self.status().to_string() + "\n")
                .with_header("X-Content-Type-Options", "nosniff"),
            _ => return None,
        })
    }

    /// `/api/status`.
    pub fn status(&self) -> serde_json::Value {
        let snap = self.shared.snapshot();
        let (connections, relaying) = self.shared.stats.connections(MAX_LISTED);
        let mut paths: Vec<PathRow> = Vec::new();
        for p in &snap.paths {
            if let Some(seen) = paths.iter_mut().find(|r| r.interface == p.interface) {
                seen.addresses.extend(p.address.clone());
                seen.backup |= p.backup;
                seen.endpoint_installed |= p.endpoint_installed;
                continue;
            }
            let health = snap.path_health.iter().find(|h| h.interface == p.interface);
            let bytes = snap
                .interfaces
                .get(&p.interface)
                .copied()
                .unwrap_or_default();
            paths.push(PathRow {
                interface: p.interface.clone(),
                addresses: p.address.iter().cloned().collect(),
                endpoint_installed: p.endpoint_installed,
                backup: p.backup,
                health: health.map(|h| h.state.clone()),
                health_since_ms: health.map(|h| h.since_ms),
                probe_rtt_us: health.and_then(|h| h.probe_rtt_us),
                rtt_us: bytes.rtt_us,
                subflows: bytes.subflows,
                bytes_sent: bytes.bytes_sent,
                bytes_received: bytes.bytes_received,
            });
        }
        let refused = self.switch_refused();
        json!({
            "uptime_seconds": snap.uptime_seconds,
            "policy": snap.path_policy,
            "policies": POLICIES.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "policy_switch": refused.is_none() && snap.path_policy.is_some(),
            "policy_switch_note": refused,
            "paths": paths,
            "interfaces": snap.interfaces,
            "bytes_up": snap.bytes_up,
            "bytes_down": snap.bytes_down,
            "connections_open": snap.connections_open,
            "connections_accepted": snap.connections_accepted,
            "upstream": snap.upstream,
            "relaying": relaying,
            "connections": connections,
            "recent_failures": snap.recent_failures,
        })
    }

    /// `POST /api/policy` with `{"policy": NAME}`.
    fn switch(&self, req: &Request) -> Response {
        if let Some(why) = self.switch_refused() {
            return Response::text(403, why);
        }
        if let Some(why) = cross_site(req) {
            return Response::text(403, why);
        }
        let given = req.header(TOKEN_HEADER).unwrap_or_default();
        if !same(given.as_bytes(), self.token.as_bytes()) {
            return Response::text(403, "missing or wrong X-Sixpath-Token");
        }
        let name = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v.get("policy")?.as_str().map(str::to_owned));
        let Some(policy) = name
            .as_deref()
            .and_then(|n| POLICIES.into_iter().find(|p| p.name() == n))
        else {
            return Response::text(
                400,
                "expected {\"policy\": \"aggregate\"|\"backup\"|\"single\"|\"handover\"}",
            );
        };
        let guard = self
            .shared
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(pm) = guard.as_ref() else {
            return Response::text(409, "no paths configured (--path): nothing to switch");
        };
        let before = pm.policy();
        match pm.set_policy(policy) {
            Ok(()) => {
                tracing::info!(from = %before, to = %policy, "path policy switched from the status page");
                Response::ok(
                    "application/json",
                    json!({ "policy": policy.name() }).to_string() + "\n",
                )
            }
            Err(e) => {
                tracing::warn!(to = %policy, error = %e, "path policy switch failed");
                Response::text(500, &format!("switching to {policy} failed: {e}"))
            }
        }
    }
}

/// Why `req` looks like it comes from another site, if it does.
fn cross_site(req: &Request) -> Option<&'static str> {
    if let Some(site) = req.header("sec-fetch-site")
        && site != "same-origin"
    {
        return Some("cross-site request refused (Sec-Fetch-Site)");
    }
    if let Some(origin) = req.header("origin") {
        let host = req.header("host").unwrap_or_default();
        let own = origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !own {
            return Some("cross-origin request refused (Origin)");
        }
    }
    None
}

/// Equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_requests_are_recognised() {
        let req = |h: &[(&str, &str)]| Request::new(Method::POST, "/api/policy", h, b"");
        assert_eq!(cross_site(&req(&[("host", "127.0.0.1:9")])), None);
        assert_eq!(
            cross_site(&req(&[
                ("host", "127.0.0.1:9"),
                ("origin", "http://127.0.0.1:9"),
                ("sec-fetch-site", "same-origin"),
            ])),
            None
        );
        assert!(
            cross_site(&req(&[
                ("host", "127.0.0.1:9"),
                ("origin", "http://evil.example")
            ]))
            .is_some()
        );
        assert!(cross_site(&req(&[("host", "127.0.0.1:9"), ("origin", "null")])).is_some());
        assert!(
            cross_site(&req(&[
                ("host", "127.0.0.1:9"),
                ("sec-fetch-site", "cross-site")
            ]))
            .is_some()
        );
        assert!(
            cross_site(&req(&[
                ("host", "127.0.0.1:9"),
                ("sec-fetch-site", "same-site")
            ]))
            .is_some()
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcd", b"abcd"));
        assert!(!same(b"abcd", b"abce"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
