//! Outbound connections to targets: DNS, egress policy, Happy Eyeballs,
//! TCP Fast Open with the client's initial data, and failures classified
//! finely enough for every protocol's reply code.
//!
//! Happy Eyeballs v2 (RFC 8305): AAAA and A are asked for at once; when A
//! answers first, AAAA gets a 50 ms resolution delay. Addresses are
//! interleaved by family, IPv6 first, and attempts start 250 ms apart (or
//! as soon as the previous one fails); the first connection wins and the
//! others are dropped. Every resolved address passes the egress policy; if
//! none does, the target is denied. Without Happy Eyeballs (SOCKS6 stack
//! option) the addresses are tried one at a time, each until it fails.
//!
//! IP TOS, TTL and Don't Fragment are set on the socket before the SYN.
//!
//! Resolving a name has its own deadline (`--dns-timeout`, [`DNS_TIMEOUT`]
//! by default), inside the connect timeout: a resolver that does not answer
//! is a DNS failure (SOCKS 0x04, as for a name that does not exist), not a
//! connection attempt that timed out, and costs less than the whole connect
//! timeout.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use sixpath_protocol::Address;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::policy::{Denied, EgressPolicy};
use crate::sys;

/// RFC 8305 §3: how long to wait for AAAA after A has answered.
const RESOLUTION_DELAY: Duration = Duration::from_millis(50);
/// RFC 8305 §5: delay between connection attempts.
const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Default deadline for resolving a target name (`--dns-timeout`): a
/// resolver answers within milliseconds or, retrying over a lossy path,
/// within a few seconds.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a target that answered Multipath TCP with plain TCP is
/// connected to with plain TCP.
const NO_MPTCP_TTL: Duration = Duration::from_secs(600);
/// Targets remembered at most; beyond, the expired go, then all.
const NO_MPTCP_MAX: usize = 4096;

/// Targets whose last Multipath TCP connection fell back to TCP. Asking
/// them again costs a Multipath TCP socket and its fallback on every
/// connection for nothing, so for [`NO_MPTCP_TTL`] they get plain TCP, as
/// the fallback would have given them.
#[derive(Debug, Default)]
struct NoMptcp {
    since: Mutex<HashMap<SocketAddr, Instant>>,
}

impl NoMptcp {
    fn remembers(&self, addr: SocketAddr) -> bool {
        let since = self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        since.get(&addr).is_some_and(|t| t.elapsed() < NO_MPTCP_TTL)
    }

    fn record(&self, addr: SocketAddr) {
        let mut since = self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if since.len() >= NO_MPTCP_MAX {
            since.retain(|_, t| t.elapsed() < NO_MPTCP_TTL);
            if since.len() >= NO_MPTCP_MAX {
                since.clear();
            }
        }
        since.insert(addr, Instant::now());
    }
}

/// Why an outbound connection failed, with what the protocols need to
/// pick a reply code.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The name has no address, or resolution failed.
    #[error("DNS resolution of {name} failed: {reason}")]
    Dns {
        /// The name.
        name: String,
        /// The resolver's explanation.
        reason: String,
    },
    /// The egress policy refused every address.
    #[error("egress to {addr} refused: {why}")]
    Denied {
        /// The refused address.
        addr: SocketAddr,
        /// Which rule.
        why: Denied,
    },
    /// The target answered with a reset.
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    /// ICMP network unreachable (or no route).
    #[error("network unreachable for {addr}")]
    NetworkUnreachable {
        /// The address.
        addr: SocketAddr,
        /// The ICMP code, when the kernel reported one.
        icmp_code: Option<u8>,
    },
    /// ICMP host or port unreachable.
    #[error("host unreachable: {addr}")]
    HostUnreachable {
        /// The address.
        addr: SocketAddr,
        /// The ICMP code, when the kernel reported one.
        icmp_code: Option<u8>,
    },
    /// ICMP time exceeded (TTL).
    #[error("TTL expired on the way to {0}")]
    TtlExpired(SocketAddr),
    /// No answer within the connect timeout.
    #[error("connection to {0} timed out")]
    TimedOut(String),
    /// Out of file descriptors or memory.
    #[error("out of resources: {0}")]
    Resources(io::Error),
    /// Anything else.
    #[error("connect failed: {0}")]
    Other(io::Error),
}

/// How to connect.
// Each flag is an independent socket setting, not a state.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Deadline for the whole attempt (resolution and every address); the
    /// resolution also ends at the connector's DNS deadline, if earlier.
    pub timeout: Duration,
    /// Open the outbound socket as Multipath TCP (SOCKS6 MPTCP stack
    /// option); the kernel falls back to TCP if the target lacks it.
    pub mptcp: bool,
    /// Send the initial data in the SYN (TCP Fast Open).
    pub fast_open: bool,
    /// Disable Nagle (`TCP_NODELAY`) on the outbound socket.
    pub nodelay: bool,
    /// Happy Eyeballs for names with several addresses: staggered, racing
    /// attempts. Without it addresses are tried one after another.
    pub happy_eyeballs: bool,
    /// IP TOS (IPv4) or traffic class (IPv6) of outgoing packets.
    pub tos: Option<u8>,
    /// IP TTL (IPv4) or hop limit (IPv6) of outgoing packets.
    pub ttl: Option<u8>,
    /// Forbid fragmentation (Don't Fragment, path MTU discovery enforced).
    pub no_fragmentation: bool,
}

/// Which of the requested socket settings the kernel took on the socket
/// that connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// [`ConnectOptions::tos`] is in effect.
    pub tos: bool,
    /// [`ConnectOptions::ttl`] is in effect.
    pub ttl: bool,
    /// [`ConnectOptions::no_fragmentation`] is in effect.
    pub no_fragmentation: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            mptcp: false,
            fast_open: false,
            nodelay: true,
            happy_eyeballs: true,
            tos: None,
            ttl: None,
            no_fragmentation: false,
        }
    }
}

/// A connected target.
#[derive(Debug)]
pub struct Connected {
    /// The stream, with the initial data already written.
    pub stream: TcpStream,
    /// The address that answered.
    pub peer: SocketAddr,
    /// How many bytes of initial data rode in the SYN.
    pub syn_data: usize,
    /// The IP-level settings in effect on the socket.
    pub applied: Applied,
    /// The connection is Multipath TCP (not fallen back to TCP), as found
    /// once it was established.
    pub mptcp: bool,
}

/// Resolves names and connects to targets under the egress policy.
#[derive(Clone)]
pub struct Connector {
    resolver: Arc<TokioResolver>,
    policy: Arc<EgressPolicy>,
    no_mptcp: Arc<NoMptcp>,
    dns_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("policy", &self.policy)
            .field("dns_timeout", &self.dns_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector using `resolver` and `policy`, resolving names within
    /// [`DNS_TIMEOUT`].
    pub fn new(resolver: TokioResolver, policy: EgressPolicy) -> Self {
        Self {
            resolver: Arc::new(resolver),
            policy: Arc::new(policy),
            no_mptcp: Arc::default(),
            dns_timeout: DNS_TIMEOUT,
        }
    }

    /// The same connector, resolving names within `timeout`.
    #[must_use]
    pub fn with_dns_timeout(mut self, timeout: Duration) -> Self {
        self.dns_timeout = timeout;
        self
    }

    /// The system resolver (`/etc/resolv.conf`, `/etc/hosts`), with
    /// hickory's cache.
    pub fn system_resolver() -> io::Result<TokioResolver> {
        TokioResolver::builder_tokio()
            .map_err(io::Error::other)?
            .build()
            .map_err(io::Error::other)
    }

    /// A resolver that asks only `servers` (UDP, TCP when an answer is
    /// truncated), with hickory's cache; `/etc/hosts` is not read.
    pub fn resolver_with_servers(servers: &[SocketAddr]) -> io::Result<TokioResolver> {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
        .build()
        .map_err(io::Error::other)
    }

    /// The egress policy.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Connects to `addr:port`, writing `initial` first (in the SYN when
    /// `opts.fast_open`).
    pub async fn connect(
        &self,
        addr: &Address,
        port: u16,
        initial: &[u8],
        opts: &ConnectOptions,
    ) -> Result<Connected, ConnectError> {
        let name = format!("{addr}:{port}");
        let deadline = tokio::time::Instant::now() + opts.timeout;
        tokio::time::timeout_at(
            deadline,
            self.connect_inner(addr, port, initial, opts, deadline),
        )
        .await
        .unwrap_or(Err(ConnectError::TimedOut(name)))
    }

    async fn connect_inner(
        &self,
        addr: &Address,
        port: u16,
        initial: &[u8],
        opts: &ConnectOptions,
        deadline: tokio::time::Instant,
    ) -> Result<Connected, ConnectError> {
        // A resolution still running at the connect deadline is a DNS
        // failure too: its own deadline is never the later one.
        let dns_deadline = deadline.min(tokio::time::Instant::now() + self.dns_timeout);
        let allowed = self.resolve_allowed_by(addr, port, dns_deadline).await?;
        if let [one] = allowed[..] {
            // One address: no race, no task to spawn.
            let c = connect_one(one, initial, opts.fast_open, opts, &self.no_mptcp).await?;
            return finish(c, initial).await;
        }
        race(
            allowed,
            Arc::from(initial),
            opts.clone(),
            Arc::clone(&self.no_mptcp),
        )
        .await
    }

    /// The socket addresses `addr:port` stands for (a name is resolved, IPv6
    /// first) that the egress policy allows; [`ConnectError::Denied`] when
    /// it allows none. Used for CONNECT, UDP datagrams and BIND peers.
    pub async fn resolve_allowed(
        &self,
        addr: &Address,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ConnectError> {
        let dns_deadline = tokio::time::Instant::now() + self.dns_timeout;
        self.resolve_allowed_by(addr, port, dns_deadline).await
    }

    /// [`Connector::resolve_allowed`], a name resolved by `dns_deadline`.
    async fn resolve_allowed_by(
        &self,
        addr: &Address,
        port: u16,
        dns_deadline: tokio::time::Instant,
    ) -> Result<Vec<SocketAddr>, ConnectError> {
        // A name that is an IP address literal (browsers send every host
        // as a name, `http://203.0.113.7/` included) is that address, and
        // goes through the policy as one.
        let candidates = if let Some(ip) = addr.ip().or_else(|| literal_ip(&addr.to_string())) {
            vec![SocketAddr::new(ip, port)]
        } else {
            let name = addr.to_string();
            tokio::time::timeout_at(dns_deadline, self.resolve(&name, port))
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectError::Dns {
                        name,
                        reason: "no answer from the DNS servers in time".into(),
                    })
                })?
        };
        let mut allowed = Vec::with_capacity(candidates.len());
        let mut first_denial = None;
        for sa in candidates {
            match self.policy.check(sa) {
                Ok(()) => allowed.push(sa),
                Err(why) => {
                    first_denial.get_or_insert(ConnectError::Denied { addr: sa, why });
                }
            }
        }
        if allowed.is_empty() {
            return Err(first_denial.unwrap_or_else(|| ConnectError::Dns {
                name: addr.to_string(),
                reason: "no addresses".into(),
            }));
        }
        Ok(allowed)
    }

    /// A and AAAA at once, interleaved IPv6 first (RFC 8305 §3–4).
    async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        let fqdn = name.to_owned();
        let v6 = self.resolver.ipv6_lookup(fqdn.clone());
        let v4 = self.resolver.ipv4_lookup(fqdn);
        tokio::pin!(v6, v4);
        let dns_err = |e: &dyn std::fmt::Display| ConnectError::Dns {
            name: name.to_owned(),
            reason: e.to_string(),
        };
        let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = tokio::select! {
            r6 = &mut v6 => {
                let six: Vec<IpAddr> = r6.map(|l| ips(&l)).unwrap_or_default();
                let four = v4.await.map(|l| ips(&l));
                match (six.is_empty(), four) {
                    (_, Ok(f)) => (six, f),
                    (false, Err(_)) => (six, Vec::new()),
                    (true, Err(e)) => return Err(dns_err(&e)),
                }
            }
            r4 = &mut v4 => {
                let four: Vec<IpAddr> = match r4 {
                    Ok(l) => ips(&l),
                    Err(e) => {
                        // A failed: AAAA is all we can get, however long it takes.
                        let six = v6.await.map_err(|e6| dns_err(&format!("{e}; {e6}")))?;
                        return Ok(ips(&six).into_iter().map(|ip| SocketAddr::new(ip, port)).collect());
                    }
                };
                let six = tokio::time::timeout(RESOLUTION_DELAY, &mut v6)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|l| ips(&l))
                    .unwrap_or_default();
                (six, four)
            }
        };
        let mut out = Vec::with_capacity(v6.len() + v4.len());
        let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => out.extend(x.into_iter().chain(y).map(|ip| SocketAddr::new(ip, port))),
            }
        }
        if out.is_empty() {
            return Err(dns_err(&"no A or AAAA records"));
        }
        Ok(out)
    }
}

/// The address a host name spells, if it is an IPv4 or IPv6 literal
/// (IPv6 with or without brackets).
pub fn literal_ip(name: &str) -> Option<IpAddr> {
    let inner = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    inner.parse().ok()
}

/// The A and AAAA addresses of a lookup (CNAME records are skipped).
fn ips(lookup: &Lookup) -> Vec<IpAddr> {
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Staggered connection attempts; the first to connect wins. Only the first
/// attempt carries the initial data in its SYN, so a slow first address
/// cannot make two servers receive the data through the race.
async fn race(
    addrs: Vec<SocketAddr>,
    initial: Arc<[u8]>,
    opts: ConnectOptions,
    no_mptcp: Arc<NoMptcp>,
) -> Result<Connected, ConnectError> {
    let mut attempts = JoinSet::new();
    let mut pending = addrs.into_iter().enumerate();
    let mut last_err = None;
    loop {
        if let Some((i, addr)) = pending.next() {
            let initial = Arc::clone(&initial);
            let opts = opts.clone();
            let no_mptcp = Arc::clone(&no_mptcp);
            attempts.spawn(async move {
                connect_one(addr, &initial, i == 0 && opts.fast_open, &opts, &no_mptcp).await
            });
        }
        let more = pending.len() > 0;
        let next = if more && opts.happy_eyeballs {
            match tokio::time::timeout(CONNECTION_ATTEMPT_DELAY, attempts.join_next()).await {
                Ok(r) => r,
                Err(_) => continue, // delay passed: start the next attempt
            }
        } else {
            attempts.join_next().await
        };
        match next {
            Some(Ok(Ok(c))) => {
                attempts.abort_all();
                return finish(c, &initial).await;
            }
            Some(Ok(Err(e))) => last_err = Some(e),
            Some(Err(join)) => last_err = Some(ConnectError::Other(io::Error::other(join))),
            None if !more => {
                return Err(last_err.unwrap_or_else(|| {
                    ConnectError::Other(io::Error::other("no address to try"))
                }));
            }
            None => {}
        }
    }
}

/// Writes what of `initial` did not go out in the SYN.
async fn finish(mut c: Connected, initial: &[u8]) -> Result<Connected, ConnectError> {
    if c.syn_data < initial.len() {
        let rest = initial.get(c.syn_data..).unwrap_or_default();
        tokio::io::AsyncWriteExt::write_all(&mut c.stream, rest)
            .await
            .map_err(|e| classify(e, c.peer, None))?;
    }
    Ok(c)
}

/// One attempt. With `syn_data`, the initial data goes out with
/// `sendto(MSG_FASTOPEN)`; the kernel puts what it can in the SYN and
/// reports how much.
async fn connect_one(
    addr: SocketAddr,
    initial: &[u8],
    syn_data: bool,
    opts: &ConnectOptions,
    no_mptcp: &NoMptcp,
) -> Result<Connected, ConnectError> {
    let want_mptcp = opts.mptcp && !no_mptcp.remembers(addr);
    let (sock, mptcp) =
        sys::nonblocking_stream_socket(&addr, want_mptcp).map_err(|e| classify(e, addr, None))?;
    if opts.nodelay {
        sock.set_tcp_nodelay(true).map_err(ConnectError::Other)?;
    }
    let _ = sys::enable_recverr(&sock, addr.is_ipv6());
    let applied = apply_ip_options(
        &sock,
        addr.is_ipv6(),
        opts.tos,
        opts.ttl,
        opts.no_fragmentation,
    );
    let mut sent = 0;
    let mut connecting = false;
    if syn_data && !initial.is_empty() {
        // Plain TCP: data in the SYN without waiting for a cookie. Multipath
        // TCP: only once the target has issued a TFO cookie, because a
        // target that acknowledges just the SYN of a SYN with data makes
        // Linux fall back to TCP, and such connections can miss the
        // target's FIN (measured on 6.18). The first connection asks for
        // the cookie; later ones carry the data in the SYN.
        if !mptcp {
            let _ = sys::enable_connect_fastopen_no_cookie(&sock);
        }
        match sock.send_to_with_flags(initial, &addr.into(), libc::MSG_FASTOPEN) {
            Ok(n) => {
                sent = n;
                connecting = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => connecting = true,
            // TFO disabled on this host (client bit of net.ipv4.tcp_fastopen):
            // connect the ordinary way.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => return Err(classify(e, addr, sys::take_icmp_error(&sock))),
        }
    }
    if !connecting {
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(classify(e, addr, sys::take_icmp_error(&sock))),
        }
    }
    let stream =
        TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(ConnectError::Other)?;
    // A connecting socket becomes writable once established, or reports an
    // error (EPOLLERR wakes writers too).
    stream.writable().await.map_err(ConnectError::Other)?;
    if let Some(e) = stream.take_error().map_err(ConnectError::Other)? {
        return Err(classify(e, addr, sys::take_icmp_error(&stream)));
    }
    if let Err(e) = stream.peer_addr() {
        return Err(classify(e, addr, sys::take_icmp_error(&stream)));
    }
    // A socket made as TCP is TCP: asked only of MPTCP sockets.
    let transport = if mptcp {
        sys::transport(&stream)
    } else {
        sys::Transport::Tcp
    };
    if transport == sys::Transport::Fallback {
        no_mptcp.record(addr);
    }
    Ok(Connected {
        stream,
        peer: addr,
        syn_data: sent,
        applied,
        mptcp: matches!(transport, sys::Transport::Mptcp { .. }),
    })
}

/// Sets TOS (traffic class), TTL (hop limit) and Don't Fragment on a
/// socket; reports which the kernel took (an MPTCP socket may refuse some).
/// Outbound sockets get them before the SYN, so every packet carries them.
pub fn apply_ip_options(
    sock: &socket2::Socket,
    ipv6: bool,
    tos: Option<u8>,
    ttl: Option<u8>,
    no_fragmentation: bool,
) -> Applied {
    let tos = tos.is_some_and(|v| {
        if ipv6 {
            sock.set_tclass_v6(u32::from(v)).is_ok()
        } else {
            sock.set_tos_v4(u32::from(v)).is_ok()
        }
    });
    let ttl = ttl.is_some_and(|v| {
        if ipv6 {
            sock.set_unicast_hops_v6(u32::from(v)).is_ok()
        } else {
            sock.set_ttl_v4(u32::from(v)).is_ok()
        }
    });
    let no_fragmentation = no_fragmentation && sys::set_no_fragmentation(sock, ipv6).is_ok();
    Applied {
        tos,
        ttl,
        no_fragmentation,
    }
}

/// Sorts an I/O error (and the ICMP error the kernel queued, if any) into a
/// [`ConnectError`].
fn classify(e: io::Error, addr: SocketAddr, icmp: Option<sys::IcmpError>) -> ConnectError {
    // ICMP types: v4 3 = destination unreachable, 11 = time exceeded;
    // v6 1 = destination unreachable, 3 = time exceeded.
    if let Some(i) = icmp {
        let v6 = i.origin == 3;
        let time_exceeded = if v6 {
            i.icmp_type == 3
        } else {
            i.icmp_type == 11
        };
        if time_exceeded {
            return ConnectError::TtlExpired(addr);
        }
        let net = if v6 {
            i.code == 0
        } else {
            i.code == 0 || i.code == 6 || i.code == 11
        };
        return if net {
            ConnectError::NetworkUnreachable {
                addr,
                icmp_code: Some(i.code),
            }
        } else {
            ConnectError::HostUnreachable {
                addr,
                icmp_code: Some(i.code),
            }
        };
    }
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ConnectError::Refused(addr),
        Some(libc::ENETUNREACH) => ConnectError::NetworkUnreachable {
            addr,
            icmp_code: None,
        },
        Some(libc::EHOSTUNREACH | libc::EHOSTDOWN | libc::EADDRNOTAVAIL) => {
            ConnectError::HostUnreachable {
                addr,
                icmp_code: None,
            }
        }
        Some(libc::ETIMEDOUT) => ConnectError::TimedOut(addr.to_string()),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            ConnectError::Resources(e)
        }
        _ => ConnectError::Other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EgressRule, RuleAction};
    use tokio::io::AsyncReadExt;

    fn connector(allow_loopback: bool) -> Connector {
        let rules = if allow_loopback {
            vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").expect("rule")]
        } else {
            Vec::new()
        };
        let resolver = Connector::system_resolver().expect("resolver");
        Connector::new(resolver, EgressPolicy::new(rules, []))
    }

    #[tokio::test]
    async fn connects_and_delivers_initial_data_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let c = connector(true);
        let opts = ConnectOptions {
            fast_open: true,
            ..ConnectOptions::default()
        };
        let target = Address::Ipv4([127, 0, 0, 1].into());
        let (conn, accepted) =
            tokio::join!(c.connect(&target, port, b"hello", &opts), listener.accept());
        conn.expect("connected");
        let (mut s, _) = accepted.expect("accept");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hello");
    }

    #[tokio::test]
    async fn refused_port_is_reported_as_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let err = connector(true)
            .connect(
                &Address::Ipv4([127, 0, 0, 1].into()),
                port,
                b"",
                &ConnectOptions::default(),
            )
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, ConnectError::Refused(_)), "{err:?}");
    }

    #[tokio::test]
    async fn loopback_is_denied_without_a_rule() {
        let err = connector(false)
            .connect(
                &Address::Ipv4([127, 0, 0, 1].into()),
                80,
                b"",
                &ConnectOptions::default(),
            )
            .await
            .expect_err("denied");
        assert!(matches!(err, ConnectError::Denied { .. }), "{err:?}");
    }
}
