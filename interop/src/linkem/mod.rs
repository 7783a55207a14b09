//! `sixpath-linkem`: a constant one-way delay for the testbed's links,
//! because the development kernels have no `netem` (`sch_netem` is not
//! built).
//!
//! iptables rules queue each link direction's packets to its own NFQUEUE
//! number. The kernel keeps every packet; this process only learns its id
//! (copy mode META), notes the deadline "arrival + delay" in a FIFO per
//! queue and, once deadlines have passed, releases everything up to the
//! newest due id with one batch `NF_ACCEPT` verdict. The delay is constant
//! per queue, so packets leave in arrival order: no reordering, and no
//! packet is ever rewritten.

pub mod msg;
pub mod sys;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// One `--queue N:DELAY_MS` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    /// NFQUEUE number.
    pub queue: u16,
    /// Added one-way delay.
    pub delay: Duration,
}

impl FromStr for QueueSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (q, d) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected QUEUE:DELAY_MS, e.g. 11:10"))?;
        let queue = q
            .parse()
            .map_err(|_| format!("{s:?}: queue number must be 0..=65535"))?;
        let ms: f64 = d
            .parse()
            .map_err(|_| format!("{s:?}: delay must be a number of milliseconds"))?;
        if !(0.0..=60_000.0).contains(&ms) {
            return Err(format!("{s:?}: delay must be 0..=60000 ms"));
        }
        Ok(Self {
            queue,
            delay: Duration::from_secs_f64(ms / 1000.0),
        })
    }
}

impl fmt::Display for QueueSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.queue, self.delay.as_secs_f64() * 1000.0)
    }
}

/// The parked packets of one queue: `(release time, id)` in arrival order.
#[derive(Debug)]
pub struct DelayLine {
    spec: QueueSpec,
    parked: VecDeque<(Instant, u32)>,
    /// Highest id seen, to release everything on shutdown.
    last: Option<u32>,
}

impl DelayLine {
    /// An empty line for `spec`.
    pub fn new(spec: QueueSpec) -> Self {
        Self {
            spec,
            parked: VecDeque::new(),
            last: None,
        }
    }

    /// The queue number.
    pub fn queue(&self) -> u16 {
        self.spec.queue
    }

    /// Notes that packet `id` arrived at `now`.
    pub fn arrive(&mut self, id: u32, now: Instant) {
        self.parked.push_back((now + self.spec.delay, id));
        self.last = Some(id);
    }

    /// Forgets the packets due at `now` and returns the newest due id (the
    /// batch verdict releases every id up to it).
    pub fn due(&mut self, now: Instant) -> Option<u32> {
        let mut newest = None;
        while let Some(&(at, id)) = self.parked.front() {
            if at > now {
                break;
            }
            newest = Some(id);
            self.parked.pop_front();
        }
        newest
    }

    /// When the oldest parked packet is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.parked.front().map(|&(at, _)| at)
    }

    /// Forgets everything and returns the newest id seen (for the final
    /// release on shutdown).
    pub fn drain(&mut self) -> Option<u32> {
        self.parked.clear();
        self.last.take()
    }

    /// Packets parked now.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

/// Receive buffer of the netlink socket (spec §8.5: 8 MiB).
const RCVBUF: i32 = 8 << 20;

fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::other(e)
}

/// Binds every queue, calls `ready` once all are bound, then delays
/// packets until SIGINT or SIGTERM; on the way out it releases every packet
/// still parked.
pub fn run(specs: &[QueueSpec], maxlen: u32, ready: impl FnOnce()) -> io::Result<()> {
    let signals = sys::Signals::open()?;
    let nl = sys::Netlink::open(RCVBUF)?;
    let mut lines: Vec<DelayLine> = specs.iter().map(|s| DelayLine::new(*s)).collect();
    let mut buf = vec![0u8; 64 * 1024];
    for (seq, line) in (1u32..).zip(&lines) {
        nl.send(&msg::bind_request(line.queue(), maxlen, seq))?;
        loop {
            sys::wait(&nl, &signals, Some(Duration::from_secs(5)))?;
            let Some(d) = nl.try_recv(&mut buf)? else {
                continue;
            };
            let events = msg::parse(d).map_err(|_| other("malformed netlink reply"))?;
            match events
                .iter()
                .find(|e| matches!(e, msg::Event::Ack { seq: s, .. } if *s == seq))
            {
                Some(msg::Event::Ack { errno: 0, .. }) => break,
                Some(msg::Event::Ack { errno, .. }) => {
                    return Err(other(format!(
                        "binding NFQUEUE {}: {}",
                        line.queue(),
                        io::Error::from_raw_os_error(*errno)
                    )));
                }
                _ => {}
            }
        }
    }
    ready();
    loop {
        let now = Instant::now();
        let next = lines.iter().filter_map(DelayLine::next_deadline).min();
        let timeout = next.map(|at| at.saturating_duration_since(now));
        let woke = sys::wait(&nl, &signals, timeout)?;
        if woke.signal {
            break;
        }
        if woke.netlink {
            while let Some(d) = nl.try_recv(&mut buf)? {
                let now = Instant::now();
                let Ok(events) = msg::parse(d) else {
                    eprintln!("sixpath-linkem: ignoring a malformed netlink message");
                    continue;
                };
                for e in events {
                    if let msg::Event::Packet { queue, id } = e
                        && let Some(line) = lines.iter_mut().find(|l| l.queue() == queue)
                    {
                        line.arrive(id, now);
                    }
                }
            }
        }
        let now = Instant::now();
        for line in &mut lines {
            if let Some(id) = line.due(now) {
                nl.send(&msg::accept_through(line.queue(), id))?;
            }
        }
    }
    for line in &mut lines {
        if let Some(id) = line.drain() {
            nl.send(&msg::accept_through(line.queue(), id))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queue_spec_parses_number_and_milliseconds() {
        let s: QueueSpec = "21:25".parse().unwrap();
        assert_eq!(s.queue, 21);
        assert_eq!(s.delay, Duration::from_millis(25));
        let s: QueueSpec = "12:2.5".parse().unwrap();
        assert_eq!(s.delay, Duration::from_micros(2500));
        for bad in ["21", "x:1", "70000:1", "1:-1", "1:1e9", "1:ms"] {
            assert!(bad.parse::<QueueSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn delay_line_releases_in_fifo_order_at_arrival_plus_delay() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = DelayLine::new("11:10".parse().unwrap());
        l.arrive(1, t0);
        l.arrive(2, t0 + ms(3));
        l.arrive(3, t0 + ms(4));
        assert_eq!(l.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(l.due(t0 + ms(9)), None);
        assert_eq!(l.due(t0 + ms(13)), Some(2));
        assert_eq!(l.len(), 1);
        assert_eq!(l.next_deadline(), Some(t0 + ms(14)));
        assert_eq!(l.due(t0 + ms(14)), Some(3));
        assert!(l.is_empty());
        assert_eq!(l.due(t0 + ms(100)), None);
        l.arrive(4, t0 + ms(100));
        assert_eq!(l.drain(), Some(4));
        assert_eq!(l.drain(), None);
    }
}
