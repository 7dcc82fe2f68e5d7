//! Closed-loop HTTP load: `wrk` when installed, otherwise a built-in generator (N keep-alive
//! connections, each sending its next request when the last answer arrived, for T seconds).
//! Either way the same tool loads intact and its peer, one after the other.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::Ctx;
use crate::stats::Summary;

#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub requests: u64,
    /// Non-2xx answers plus socket errors.
    pub errors: u64,
    /// The command (or description) that produced it.
    pub command: String,
}

/// Loads `url` with the configured threads, connections and duration.
pub async fn run(ctx: &Ctx, url: &str) -> Result<LoadResult> {
    run_for(ctx, url, ctx.args.duration_secs).await
}

/// [`run`] for `duration_secs` instead of `--duration-secs` (measurements that split their
/// load into rounds).
pub async fn run_for(ctx: &Ctx, url: &str, duration_secs: u64) -> Result<LoadResult> {
    run_with(ctx, url, ctx.args.connections, duration_secs, None).await
}

/// [`run`] with `connections` and, when given, an `Authorization` header value on every
/// request (shown as `$TOKEN` in the command).
pub async fn run_with(
    ctx: &Ctx,
    url: &str,
    connections: u32,
    duration_secs: u64,
    authorization: Option<&str>,
) -> Result<LoadResult> {
    let a = &ctx.args;
    let result = match &ctx.tools.wrk {
        Some(wrk) => {
            let header = if authorization.is_some() {
                " -H 'Authorization: Bearer $TOKEN'"
            } else {
                ""
            };
            let command = format!(
                "wrk -t{} -c{connections} -d{duration_secs}s --latency{header} {url}",
                a.threads
            );
            crate::progress(&command);
            let mut wrk = tokio::process::Command::new(wrk);
            if let Some(value) = authorization {
                wrk.arg("-H").arg(format!("Authorization: {value}"));
            }
            let out = wrk
                .arg(format!("-t{}", a.threads))
                .arg(format!("-c{connections}"))
                .arg(format!("-d{duration_secs}s"))
                .arg("--latency")
                .arg(url)
                .output()
                .await
                .context("running wrk")?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                bail!(
                    "wrk failed ({}): {text}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            parse_wrk(&text, command).with_context(|| format!("reading wrk's output:\n{text}"))?
        }
        None => builtin(url, connections, Duration::from_secs(duration_secs), authorization).await?,
    };
    crate::progress(format!(
        "  {:.0} req/s, p50 {:?}, p99 {:?}, {} requests, {} errors",
        result.requests_per_sec, result.p50, result.p99, result.requests, result.errors
    ));
    // A server answering errors fast is not fast: refuse the figure.
    if result.errors * 100 > result.requests.max(1) {
        bail!(
            "{} of {} requests to {url} failed; not a figure",
            result.errors,
            result.requests
        );
    }
    Ok(result)
}

/// `409.00us`, `1.26ms`, `2.01s`, `1.00m` as a duration.
fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn parse_wrk(text: &str, command: String) -> Result<LoadResult> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut requests = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_wrk_duration(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_wrk_duration(v.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Ok(LoadResult {
        requests_per_sec: rps.ok_or_else(|| anyhow!("no Requests/sec line"))?,
        p50: p50.ok_or_else(|| anyhow!("no 50% line"))?,
        p99: p99.ok_or_else(|| anyhow!("no 99% line"))?,
        requests: requests.ok_or_else(|| anyhow!("no request count"))?,
        errors,
        command,
    })
}

/// The fallback when wrk is missing: `connections` tasks, each with its own one-connection
/// client, looping until the deadline.
async fn builtin(url: &str, connections: u32, duration: Duration, authorization: Option<&str>) -> Result<LoadResult> {
    let command = format!(
        "intact-bench --no-wrk (built-in generator: {connections} keep-alive connections, {}s) {url}",
        duration.as_secs()
    );
    crate::progress(&command);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = url.to_owned();
        let authorization = authorization.map(str::to_owned);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut request = client.get(&url);
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                let ok = match request.send().await {
                    Ok(resp) if resp.status().is_success() => resp.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (lat, err) = joined.context("load task")?;
        all.extend(lat);
        errors += err;
    }
    let elapsed = started.elapsed();
    let requests = all.len() as u64 + errors;
    let summary = Summary::of(all);
    Ok(LoadResult {
        requests_per_sec: summary.n as f64 / elapsed.as_secs_f64(),
        p50: summary.p50,
        p99: summary.p99,
        requests,
        errors,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:8080/small.bin
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   449.02us  229.35us   8.25ms   83.12%
    Req/Sec    35.52k     2.51k   41.02k    71.00%
  Latency Distribution
     50%  409.00us
     75%  517.00us
     90%  662.00us
     99%    1.26ms
  706788 requests in 10.00s, 2.85GB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  70671.21
Transfer/sec:    291.78MB
";

    #[test]
    fn parses_wrk_output() {
        let r = parse_wrk(WRK, "wrk".into()).expect("parse");
        assert_eq!(r.requests, 706_788);
        assert!((r.requests_per_sec - 70_671.21).abs() < 0.01);
        assert_eq!(r.p50, Duration::from_micros(409));
        assert_eq!(r.p99, Duration::from_micros(1260));
        assert_eq!(r.errors, 8);
    }

    #[test]
    fn refuses_output_without_figures() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1", "wrk".into()).is_err());
    }
}
