//! `swap`: a module swapped again and again (uploaded, or written to a watched folder) while
//! matches play, and how long each swap takes to go live.

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::Value;
use sha2::Digest;
use std::time::{Duration, Instant};

pub(crate) struct Swaps {
    pub(crate) urls: Vec<String>,
    pub(crate) game: String,
    pub(crate) dir: Option<std::path::PathBuf>,
    pub(crate) token: Option<String>,
}

/// The module with a custom section appended: the same rules, another version.
pub(crate) fn tagged(bytes: &[u8], tag: &str) -> Vec<u8> {
    use wasm_encoder::Section;
    let mut out = bytes.to_vec();
    let section = wasm_encoder::CustomSection {
        name: "loadgen-swap".into(),
        data: tag.as_bytes().into(),
    };
    section.append_to(&mut out);
    out
}

pub(crate) async fn swap(
    swaps: Swaps,
    module: &std::path::Path,
    times: usize,
    interval: Duration,
) -> Result<()> {
    if swaps.urls.is_empty() {
        bail!("give at least one --urls");
    }
    let base =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let http = reqwest::Client::new();
    let mut latencies = Histogram::<u64>::new(3)?;
    let run = format!("{}", std::process::id());
    for n in 0..times {
        let bytes = tagged(&base, &format!("{run}-{n}"));
        let landed = Instant::now();
        // The version is whatever the host answers (upload) or the one every instance reports.
        let version = match &swaps.dir {
            Some(dir) => {
                let temp = dir.join(format!(".{}.wasm.part", swaps.game));
                std::fs::write(&temp, &bytes)?;
                std::fs::rename(&temp, dir.join(format!("{}.wasm", swaps.game)))?;
                None
            }
            None => {
                let url = format!("{}/rules/{}", swaps.urls[n % swaps.urls.len()], swaps.game);
                let mut request = http.post(url).body(bytes.clone());
                if let Some(token) = &swaps.token {
                    request = request.bearer_auth(token);
                }
                let answer: Value = request.send().await?.error_for_status()?.json().await?;
                Some(answer["version"].as_str().unwrap_or_default().to_string())
            }
        };
        let landed = if version.is_some() {
            Instant::now()
        } else {
            landed
        };
        let wanted = match version {
            Some(version) => version,
            None => sha256_hex(&bytes),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pending: Vec<&String> = swaps.urls.iter().collect();
        while !pending.is_empty() {
            // All instances at once, then a pause: asking in a tight loop would load the very
            // machine whose swap is being timed.
            let asked = pending.iter().map(|url| {
                let (http, wanted, game) = (&http, &wanted, &swaps.game);
                async move {
                    let rules: Value = http
                        .get(format!("{url}/rules"))
                        .send()
                        .await?
                        .json()
                        .await?;
                    anyhow::Ok(rules["games"][game]["active"] == wanted.as_str())
                }
            });
            let answers = futures_util::future::join_all(asked).await;
            let mut still = Vec::new();
            for (url, active) in pending.into_iter().zip(answers) {
                if !active? {
                    still.push(url);
                }
            }
            pending = still;
            if Instant::now() > deadline {
                bail!("swap {n}: not active everywhere within 10 s");
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let took = landed.elapsed();
        latencies.record(took.as_micros().max(1) as u64)?;
        println!(
            "swap {n}: active on {} instances after {:.1} ms",
            swaps.urls.len(),
            took.as_secs_f64() * 1000.0
        );
        tokio::time::sleep(interval).await;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "{times} swaps; landing to active everywhere: p50 {:.1} ms, max {:.1} ms",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.max())
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
