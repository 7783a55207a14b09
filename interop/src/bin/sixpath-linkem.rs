//! `sixpath-linkem`: adds a constant one-way delay to packets that iptables
//! queues with `-j NFQUEUE --queue-num N` (the testbed's replacement for
//! `netem delay`). Needs `CAP_NET_ADMIN` in the network namespace of the
//! rules.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use sixpath_interop::linkem::{self, QueueSpec};

/// Delay line for NFQUEUE: holds each queued packet in the kernel for the
/// configured time, then accepts it, in arrival order.
#[derive(Debug, Parser)]
#[command(name = "sixpath-linkem", version)]
struct Args {
    /// Queue number and one-way delay in milliseconds, e.g. `11:10`.
    /// Repeat for more queues.
    #[arg(long = "queue", value_name = "N:DELAY_MS", required = true)]
    queues: Vec<QueueSpec>,
    /// Most packets the kernel parks per queue; more are dropped (like a
    /// full netem queue).
    #[arg(long, default_value_t = 20_000)]
    maxlen: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let res = linkem::run(&args.queues, args.maxlen, || {
        let q: Vec<String> = args.queues.iter().map(ToString::to_string).collect();
        // The testbed waits for this line before it queues any packet.
        println!("ready {}", q.join(" "));
        let _ = std::io::stdout().flush();
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sixpath-linkem: {e}");
            ExitCode::FAILURE
        }
    }
}
