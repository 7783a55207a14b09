//! SOCKS6 Stack options (draft -11 §8.1, digest §3.2) as this server acts
//! on them: TOS, TTL and No Fragmentation on the outbound socket before its
//! SYN and on the client's socket for the client-proxy leg; Happy Eyeballs,
//! TFO and MPTCP for the outbound connect; and the report of each in the
//! Operation Reply, on the legs where the kernel took it.

use std::any::Any;

use sixpath_protocol::Address;
use sixpath_protocol::socks6::{
    Availability, Leg, OperationReply, Request, SocksOption, StackOption, StackValue,
};
use tokio::net::TcpStream;

use crate::outbound::{Applied, ConnectOptions};
use crate::state::Shared;

/// The Stack options of a request, as this server acts on them.
#[derive(Debug, Default)]
pub(super) struct Stack {
    /// TOS, TTL and No Fragmentation asked for, with their legs.
    tos: Option<(Leg, u8)>,
    ttl: Option<(Leg, u8)>,
    no_frag: Option<(Leg, Availability)>,
    /// Happy Eyeballs as asked (only for a domain-name target).
    happy_eyeballs: Option<Availability>,
    tfo: Option<u16>,
    mptcp: Option<Availability>,
}

impl Stack {
    pub(super) fn of(req: &Request) -> Self {
        let mut s = Self::default();
        let remote = |leg: Leg| leg.overlaps(Leg::PROXY_REMOTE);
        for o in req.options.stack() {
            match o.value {
                StackValue::Tos(v) => s.tos = Some((o.leg, v)),
                StackValue::Ttl(v) => s.ttl = Some((o.leg, v)),
                StackValue::NoFragmentation(a) => s.no_frag = Some((o.leg, a)),
                // "Meaningful only when the Request address is a Domain
                // Name; otherwise the proxy MUST silently ignore it."
                StackValue::HappyEyeballs(a)
                    if remote(o.leg) && matches!(req.endpoint.addr, Address::Domain(_)) =>
                {
                    s.happy_eyeballs = Some(a);
                }
                StackValue::Tfo(n) if remote(o.leg) => s.tfo = Some(n),
                StackValue::Mptcp(a) if remote(o.leg) => s.mptcp = Some(a),
                _ => {}
            }
        }
        s
    }

    fn on_remote<T: Copy>(x: Option<(Leg, T)>) -> Option<T> {
        x.filter(|(l, _)| l.overlaps(Leg::PROXY_REMOTE))
            .map(|(_, v)| v)
    }

    pub(super) fn connect_options(&self, shared: &Shared) -> ConnectOptions {
        ConnectOptions {
            timeout: shared.settings.connect_timeout,
            // Without the option the proxy "SHOULD NOT enable MPTCP" for
            // CONNECT (§3.2).
            mptcp: self.mptcp == Some(Availability::AVAILABLE),
            // "If absent, the proxy MUST NOT" attempt TFO (§3.2 TFO row).
            fast_open: self.tfo.is_some(),
            happy_eyeballs: self.happy_eyeballs != Some(Availability::UNAVAILABLE),
            tos: Self::on_remote(self.tos),
            ttl: Self::on_remote(self.ttl),
            no_fragmentation: Self::on_remote(self.no_frag) == Some(Availability::AVAILABLE),
            ..ConnectOptions::default()
        }
    }

    /// Applies the client-proxy leg options to the client's socket, when it
    /// is a TCP socket; reports what the kernel took.
    pub(super) fn apply_client_leg(&self, client: &dyn Any) -> Applied {
        let on_client = |leg: Leg| leg.overlaps(Leg::CLIENT_PROXY);
        let pick = |x: Option<(Leg, u8)>| x.filter(|(l, _)| on_client(*l)).map(|(_, v)| v);
        let (tos, ttl) = (pick(self.tos), pick(self.ttl));
        let no_frag = self
            .no_frag
            .is_some_and(|(l, a)| on_client(l) && a == Availability::AVAILABLE);
        let Some(sock) = client.downcast_ref::<TcpStream>() else {
            return Applied::default();
        };
        if tos.is_none() && ttl.is_none() && !no_frag {
            // Nothing asked for this leg (the usual request): no system call.
            return Applied::default();
        }
        // A v4-mapped client on an IPv6 listener sends IPv4 packets: the
        // IPv4 options apply.
        let v6 = sock.local_addr().is_ok_and(|a| match a.ip() {
            std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped().is_none(),
            std::net::IpAddr::V4(_) => false,
        });
        crate::outbound::apply_ip_options(&socket2::SockRef::from(sock), v6, tos, ttl, no_frag)
    }

    /// The Stack options of the Operation Reply: "A proxy MUST report every
    /// Stack option it supports that the client sent" (§3.2), each on the
    /// legs where it took effect.
    pub(super) fn report(
        &self,
        remote: Applied,
        client: Applied,
        used_mptcp: bool,
        reply: &mut OperationReply,
    ) {
        let legs = |r: bool, c: bool| match (r, c) {
            (true, true) => Some(Leg::BOTH),
            (true, false) => Some(Leg::PROXY_REMOTE),
            (false, true) => Some(Leg::CLIENT_PROXY),
            (false, false) => None,
        };
        let mut push = |leg: Leg, value: StackValue| {
            let _ = reply
                .options
                .push(SocksOption::Stack(StackOption { leg, value }));
        };
        if let Some((_, v)) = self.tos
            && let Some(leg) = legs(remote.tos, client.tos)
        {
            push(leg, StackValue::Tos(v));
        }
        if let Some((_, v)) = self.ttl
            && let Some(leg) = legs(remote.ttl, client.ttl)
        {
            push(leg, StackValue::Ttl(v));
        }
        if let Some((asked, _)) = self.no_frag {
            // Enforced where it took effect; "not enforced" on the other
            // legs asked for.
            let on = legs(remote.no_fragmentation, client.no_fragmentation);
            if let Some(leg) = on {
                push(leg, StackValue::NoFragmentation(Availability::AVAILABLE));
            }
            let off = Leg(asked.0 & !on.map_or(0, |l| l.0));
            if off.0 != 0 {
                push(off, StackValue::NoFragmentation(Availability::UNAVAILABLE));
            }
        }
        if let Some(he) = self.happy_eyeballs {
            push(Leg::PROXY_REMOTE, StackValue::HappyEyeballs(he));
        }
        if let Some(size) = self.tfo {
            push(Leg::PROXY_REMOTE, StackValue::Tfo(size));
        }
        if self.mptcp.is_some() {
            let avail = if used_mptcp {
                Availability::AVAILABLE
            } else {
                Availability::UNAVAILABLE
            };
            push(Leg::PROXY_REMOTE, StackValue::Mptcp(avail));
        }
    }
}
