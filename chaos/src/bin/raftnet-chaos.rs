//! `raftnet-chaos proxy --target HOST:PORT [--listen ADDR:PORT] [--script FILE]`: one faulty
//! link from the command line. It forwards every connection made to `--listen` (default
//! 127.0.0.1:0, printed) to `--target`, and plays the script's faults (see the `script` module
//! for the format), or reads steps from stdin as they are typed, with their times ignored
//! (`0 both blackhole`, then `0 both heal`).

use std::io::BufRead;
use std::net::ToSocketAddrs;

use raftnet_chaos::proxy::Link;
use raftnet_chaos::script;

const USAGE: &str =
    "usage: raftnet-chaos proxy --target HOST:PORT [--listen ADDR:PORT] [--script FILE]";

fn main() {
    if let Err(e) = run() {
        eprintln!("raftnet-chaos: {e}\n{USAGE}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("proxy") {
        return Err("the one command is proxy".into());
    }
    let (mut target, mut listen, mut script_file) = (None, "127.0.0.1:0".to_string(), None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--target" => target = Some(value()?),
            "--listen" => listen = value()?,
            "--script" => script_file = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let resolve = |a: &str| {
        a.to_socket_addrs()
            .map_err(|e| format!("{a}: {e}"))?
            .next()
            .ok_or(format!("{a} does not resolve"))
    };
    let target = resolve(&target.ok_or("--target is required")?)?;
    let link = Link::start_on(resolve(&listen)?, target, 0).map_err(|e| e.to_string())?;
    println!("proxy: {} → {target}", link.addr());
    match script_file {
        Some(file) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
            let steps = script::parse(&text)?;
            script::play(&link, &steps, |step| println!("{:?}: {step:?}", step.at));
            println!("script done; forwarding until killed");
            std::thread::park();
        }
        None => {
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|e| e.to_string())?;
                match script::parse(&line) {
                    Ok(steps) => steps.iter().for_each(|s| script::apply(&link, s)),
                    Err(e) => eprintln!("{e}"),
                }
            }
        }
    }
    Ok(())
}
