//! What receiving an EspoCRM webhook costs: a signed batch of 50 new ids
//! through the host (tenant from the key in the query, the plugin's call, the
//! signature check in the host, dedup with one `set-add`, 50 events emitted),
//! Redis store. Each request carries 50 ids never seen before, the most work
//! a delivery can cause.
//!
//! The load comes from this process (`BENCH_CONNECTIONS` clients, default 16,
//! each sending one request after the other until `BENCH_REQUESTS` requests,
//! default 1,900, or `BENCH_SECONDS`, default 10), and shares the two cores
//! with the host. The pending set of one action holds at most 100,000 ids
//! (the store's cap on a set), and no sync finishes here: 1,900 × 50 ids
//! stay below it. The plugin's own event handling
//! runs meanwhile, held to one handler at a time (`events.max_concurrent = 1`),
//! against an EspoCRM that refuses connections, so the syncs fail fast and
//! wait for a retry.
//!
//! Run: `cargo bench -p bitbylaw-tests --bench vmh_webhooks` (Redis on 127.0.0.1:6379).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bitbylaw_tests::bench::env_or;
use bitbylaw_tests::simulators::espocrm;
use bitbylaw_tests::vmh::{VmhOptions, VmhRig, webhook_id, webhook_secret};

const BATCH: usize = 50;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 16);
    let requests = env_or("BENCH_REQUESTS", 1_900);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rig = VmhRig::start(VmhOptions {
            subscription: "concurrency = 1\nbackoff_base_ms = 600000".into(),
            // Appended to the rig's `[events]` table.
            host: "max_concurrent = 1\n[log]\nfilter = \"warn\"\n".into(),
            register_webhooks: false,
            ..VmhOptions::default()
        })
        .await;
        rig.espocrm.refuse_connections();
        let url = VmhRig::webhook_url(&rig.host, "create");
        let (id, secret) = (webhook_id("create"), webhook_secret("create"));
        let next = Arc::new(AtomicU64::new(0));
        let body_for = move |n: u64| {
            let records: Vec<serde_json::Value> = (0..BATCH as u64)
                .map(|k| serde_json::json!({ "id": format!("{:017x}", n * BATCH as u64 + k), "name": "Bench" }))
                .collect();
            serde_json::to_vec(&records).unwrap()
        };
        // Warm: the plugin's instances and the connections.
        for _ in 0..20 {
            let n = next.fetch_add(1, Ordering::Relaxed);
            send(&rig.host.client, &url, &id, &secret, body_for(n)).await;
        }
        let stop = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let clients: Vec<_> = (0..connections)
            .map(|_| {
                let (client, url, id, secret, next) =
                    (rig.host.client.clone(), url.clone(), id.clone(), secret.clone(), next.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < stop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            break;
                        }
                        let body = body_for(n);
                        let sent = Instant::now();
                        send(&client, &url, &id, &secret, body).await;
                        latencies.push(sent.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for client in clients {
            latencies.extend(client.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        println!(
            "webhook receipt, {BATCH} new ids a request, {connections} clients, {:.1} s: {} requests, {:.0} req/s ({:.0} ids/s); p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            elapsed.as_secs_f64(),
            latencies.len(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            (latencies.len() * BATCH) as f64 / elapsed.as_secs_f64(),
            at(0.50).as_secs_f64() * 1e3,
            at(0.90).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3,
        );
        let announced = rig.announced("create").len();
        println!("announced: {announced} events (every id once: {})", announced == (latencies.len() + 20) * BATCH);
    });
}

async fn send(client: &reqwest::Client, url: &str, id: &str, secret: &str, body: Vec<u8>) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("Signature", espocrm::webhook_signature(id, secret, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    assert!(
        text.contains(&format!("\"new_ids_count\":{BATCH}")),
        "{text}"
    );
}
