//! Redaction throughput: `cargo bench -p pier --bench redaction`.
//!
//! 16 MiB of log-like text (words, numbers, hex ids, base64 runs, JSON), redacted whole,
//! as a stream in 64 KiB chunks, and line by line through the output line assembler, with
//! an API key registered, then with an SSH private key as well (whose many long forms
//! take the NFA instead of the DFA). Figures go in BENCHMARKS.md.

use std::time::{Duration, Instant};

use pier::caps::events::OutputLines;
use pier::caps::secrets::Redactor;

const SIZE: usize = 16 << 20;

/// Deterministic log-like text, `secrets` sprinkled in every 1000th line.
fn text(secrets: &[&str]) -> String {
    let words = ["deploy", "build", "release", "INFO", "GET", "/apps/hello-app/builds", "200", "ms", "ok", "->"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = String::with_capacity(SIZE + 256);
    let mut line = 0usize;
    while out.len() < SIZE {
        let n = next();
        match n % 5 {
            0 => out.push_str(&format!("{:016x} {} {}\n", next(), words[(n >> 8) as usize % 10], next() % 10_000)),
            1 => {
                out.push_str(&format!("{{\"id\":\"{:x}\",\"status\":\"{}\"}}\n", next(), words[(n >> 8) as usize % 10]))
            }
            2 => out.push_str(&format!("data: {:x}{:x}{:x}==\n", next(), next(), next())),
            _ => {
                for _ in 0..(n % 12) {
                    out.push_str(words[(next() % 10) as usize]);
                    out.push(' ');
                }
                out.push('\n');
            }
        }
        line += 1;
        if line.is_multiple_of(1000)
            && let Some(secret) = secrets.get(line / 1000 % secrets.len().max(1))
        {
            out.push_str(&format!("token {secret}\n"));
        }
    }
    out
}

fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap()
}

fn report(name: &str, time: Duration) {
    let mib = SIZE as f64 / f64::from(1 << 20);
    println!("{name:<64} {:>9.1} ms  {:>7.0} MiB/s", time.as_secs_f64() * 1e3, mib / time.as_secs_f64());
}

fn main() {
    let key = "heroku-api-key-ada-5f0c2b7e9d";
    let (private, _) = pier::caps::keys::generate("ssh_key", "bench").unwrap();
    let private = secrecy::ExposeSecret::expose_secret(&private).to_string();
    for (label, secrets) in [("an API key", vec![key]), ("an API key and an SSH private key", vec![key, &private])] {
        let r = Redactor::new();
        let start = Instant::now();
        secrets.iter().for_each(|s| r.register(s));
        println!(
            "{label}: registered in {:.1} ms, longest form {} bytes",
            start.elapsed().as_secs_f64() * 1e3,
            r.longest()
        );
        for (what, text) in [("no secret", text(&[])), ("a secret every 1000 lines", text(&[key]))] {
            report(&format!("  redact, whole, {what}"), best(5, || drop(r.redact(&text))));
            report(
                &format!("  stream, 64 KiB chunks, {what}"),
                best(5, || {
                    let mut stream = r.stream();
                    for chunk in text.as_bytes().chunks(64 << 10) {
                        drop(stream.push(chunk));
                    }
                    drop(stream.finish());
                }),
            );
            report(
                &format!("  output lines, line by line, {what}"),
                best(3, || {
                    let mut lines = OutputLines::with(&r);
                    for line in text.lines() {
                        drop(lines.push_line(line));
                    }
                    drop(lines.finish());
                }),
            );
        }
    }
}
