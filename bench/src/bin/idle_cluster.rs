//! `raftnet-idle-cluster`: what a 3-node openraft cluster at rest costs, over raftnet and over
//! the tokio baseline's network, in one run: CPU as a percentage of one CPU, and context
//! switches per second, while nothing is written and heartbeats (every 50 ms) are all the work.
//! Issue 11's goal: raftnet's idle cluster stays at or under 1 % of one CPU.
//!
//! ```text
//! cargo run --release -p raftnet-bench --bin raftnet-idle-cluster -- [SECONDS] [ROUNDS] [task|thread] [raftnet|tokio|both]
//! ```
//!
//! Each round measures the raftnet cluster, then the tokio one (SECONDS each, default 10; 3
//! rounds by default), after a 2 s settle; the medians are printed last. CPU time is the
//! process's own (getrusage), so other load on the machine does not count in it, though it can
//! delay wake-ups. The last argument places raftnet's drivers as raftnet-bench's `--reactor`
//! does: a task on each node's runtime (default, as the openraft adapter recommends) or a
//! thread of their own. The last picks the networks to run (both by default; one alone is for
//! profiling one network's process with `perf`).

use std::time::Duration;

use raftnet_bench::cluster::{self, Idle, Network, Reactor, Store};
use raftnet_bench::measure::median;

const SETTLE: Duration = Duration::from_secs(2);

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(10.0, |a| a.parse().expect("SECONDS"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let reactor = args.next().map_or(Reactor::Task, |a| {
        Reactor::from_name(&a).expect("the reactor: task or thread")
    });
    cluster::set_reactor(reactor);
    println!("raftnet's drivers: {}", reactor.name());
    let window = Duration::from_secs_f64(seconds);
    let networks: &[Network] = match args.next().as_deref() {
        None | Some("both") => &[Network::Raftnet, Network::Tokio],
        Some("raftnet") => &[Network::Raftnet],
        Some("tokio") => &[Network::Tokio],
        Some(other) => panic!("the networks: raftnet, tokio or both, not {other:?}"),
    };
    let mut results: Vec<Vec<Idle>> = vec![Vec::new(); networks.len()];
    println!(
        "{:<8} {:>5} {:>12} {:>14} {:>13}",
        "network", "round", "cpu % of 1", "switches/s", "same leader"
    );
    for round in 1..=rounds {
        for (n, &network) in networks.iter().enumerate() {
            let idle = match cluster::idle(network, Store::Bench, SETTLE, window) {
                Ok(idle) => idle,
                Err(e) => {
                    eprintln!("{}: {e}", network.name());
                    std::process::exit(1);
                }
            };
            println!(
                "{:<8} {:>5} {:>12.3} {:>14.0} {:>13}",
                network.name(),
                round,
                idle.cpu_percent_of_one_cpu(),
                idle.usage.switches.total() as f64 / idle.window.as_secs_f64(),
                idle.same_leader
            );
            results[n].push(idle);
        }
    }
    println!("medians of {rounds} rounds of {seconds} s:");
    for (n, network) in networks.iter().enumerate() {
        let cpu = median(results[n].iter().map(Idle::cpu_percent_of_one_cpu)).unwrap_or(f64::NAN);
        let switches = median(
            results[n]
                .iter()
                .map(|i| i.usage.switches.total() as f64 / i.window.as_secs_f64()),
        )
        .unwrap_or(f64::NAN);
        println!(
            "{:<8} cpu {cpu:.3} % of one CPU, {switches:.0} switches/s",
            network.name()
        );
    }
}
