//! Measurements 3b and 5c: many clients download the large file at once (`--crowd-clients`,
//! each on its own connection, reading as fast as they can and discarding the bytes), from a
//! server started just for it: the aggregate rate, and the server's peak resident memory
//! meanwhile. The target is flat memory, under 64 MiB for 100 clients, whatever the file's
//! size. Peer: nginx serving the same inode, its workers' peaks summed (the whole server).

use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::fixture::{LARGE_PATH, Reads};
use crate::nginx::Nginx;
use crate::report::{Better, Row};
use crate::server::Server;
use crate::stats::fmt_mib;
use crate::{Ctx, progress};

/// Every client's download at once; the aggregate MB/s.
async fn crowd(url: &str, size: u64, clients: usize) -> Result<f64> {
    progress(format!("{clients} clients at once: GET {url}"));
    let started = Instant::now();
    let mut downloads = Vec::with_capacity(clients);
    for _ in 0..clients {
        // A client each: its own connection, as a crowd of machines would have.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building a client")?;
        let url = url.to_owned();
        downloads.push(tokio::spawn(async move {
            let resp = client.get(&url).send().await.context("sending")?;
            ensure!(resp.status().is_success(), "{url}: {}", resp.status());
            let mut resp = resp;
            let mut got = 0u64;
            while let Some(chunk) = resp.chunk().await.context("reading the body")? {
                got += chunk.len() as u64;
            }
            Ok(got)
        }));
    }
    for download in downloads {
        let got = download.await.context("a client task")??;
        ensure!(got == size, "{url}: a client got {got} bytes, expected {size}");
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = (size as f64 * clients as f64) / 1e6 / secs.max(1e-9);
    progress(format!("  {rate:.0} MB/s in all, {secs:.1} s"));
    Ok(rate)
}

pub async fn run(ctx: &Ctx, fx: &Reads) -> Result<Vec<Row>> {
    let clients = ctx.args.crowd_clients;
    let size = fx.large_size;
    let server = Server::start(ctx, &fx.data, "crowd")?;
    let baseline = server.rss_kib();
    let intact_rate = crowd(&server.url(LARGE_PATH), size, clients).await?;
    let intact_peak = server.peak_rss_kib();
    drop(server);

    let peer = match &ctx.tools.nginx {
        Some(bin) => {
            let nginx = Nginx::start(bin, &fx.nginx_prefix("crowd"), &fx.www)?;
            let rate = crowd(&nginx.url("/large.bin"), size, clients).await?;
            let peak = nginx.workers_peak_rss_total_kib();
            Some((nginx.version.clone(), rate, peak))
        }
        None => {
            ctx.note("nginx is not installed: measurements 3b and 5c have no peer");
            None
        }
    };

    let mib = size >> 20;
    let rate_what = format!("{clients} clients at once download a {mib} MiB file: aggregate rate");
    let rate_fig = format!("{intact_rate:.0} MB/s");
    let memory_what = format!("server peak RSS (VmHWM) while {clients} clients download a {mib} MiB file at once");
    let memory_fig = format!("{} (after start-up {})", fmt_mib(intact_peak), fmt_mib(baseline));
    let reproduce = vec![format!(
        "intact-bench --only large --crowd-clients {clients} --large-mib {mib}"
    )];
    Ok(match peer {
        Some((name, rate, peak)) => vec![
            Row::compare(
                "3b",
                rate_what,
                (intact_rate, rate_fig),
                name.clone(),
                (rate, format!("{rate:.0} MB/s")),
                Better::Higher,
                reproduce.clone(),
            ),
            Row::compare(
                "5c",
                memory_what,
                (intact_peak as f64, memory_fig),
                format!("{name}, its workers' peaks summed"),
                (peak as f64, fmt_mib(peak)),
                Better::Smaller,
                reproduce,
            ),
        ],
        None => vec![
            Row::alone("3b", rate_what, rate_fig, "nginx missing", reproduce.clone()),
            Row::alone("5c", memory_what, memory_fig, "nginx missing", reproduce),
        ],
    })
}
