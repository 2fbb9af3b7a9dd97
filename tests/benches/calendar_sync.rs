//! `calendar-sync` at firm scale: `BENCH_EMPLOYEES` (50) employees with
//! `BENCH_APPOINTMENTS` (500) appointments each, against the Advoware and
//! Google simulators with Google's quotas enforced (600 requests a minute
//! per mailbox, 10,000 per project) and `BENCH_LATENCY_MS` (30) on every
//! upstream call. Measures, from `POST /advoware/calendar/sync {"kuerzel":
//! "ALL"}` until every employee's run has reported:
//!   1. the first full sync,
//!   2. an incremental sync with nothing changed (writes, Google reads),
//!   3. one with 1 % of the appointments changed in Advoware.
//!
//! Run: `cargo bench -p bitbylaw-tests --bench calendar_sync` (Redis on
//! 127.0.0.1:6379, components built: `scripts/bench.sh` sees to both).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bitbylaw_tests::bench::{CpuReading, env_or};
use bitbylaw_tests::calendar::{CalendarRig, RigOptions};
use bitbylaw_tests::simulators::google::Quotas;
use chrono::{Days, Utc};
use serde_json::{Value, json};

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let employees = env_or("BENCH_EMPLOYEES", 50) as usize;
    let appointments = env_or("BENCH_APPOINTMENTS", 500) as usize;
    let latency = Duration::from_millis(env_or("BENCH_LATENCY_MS", 30));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(employees, appointments, latency));
}

async fn bench(employees: usize, appointments: usize, latency: Duration) {
    let codes: Vec<String> = (0..employees).map(|i| format!("E{i:02}")).collect();
    let rig = CalendarRig::start(RigOptions {
        employees: codes
            .iter()
            .map(|c| (c.clone(), format!("{}@kanzlei.example", c.to_lowercase())))
            .collect(),
        config: "write_to_advoware = true".into(),
        // The host keeps below Google's quotas itself; waiting for quota is part of the run.
        google: "user_requests_per_minute = 600\nproject_requests_per_minute = 10000\nquota_wait_ms = 120000".into(),
        concurrency: employees as u32,
        host: "max_concurrent = 64\n[log]\nfilter = \"warn\"\n".into(),
        ..RigOptions::default()
    })
    .await;
    rig.advoware.set_employees(
        codes
            .iter()
            .map(|c| json!({ "kuerzel": c, "name": c, "vorname": "Bench" }))
            .collect(),
    );
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive();
    let mut numbers: Vec<Vec<i64>> = Vec::new();
    for code in &codes {
        numbers.push(
            (0..appointments)
                .map(|i| {
                    let day = today + Days::new(1 + (i as u64 * 7) % 360);
                    let hour = 8 + i % 9;
                    rig.advoware.insert_appointment(json!({
                        "kuerzel": code, "text": format!("Termin {i}"), "notiz": "Akte 1/26", "ort": "Kanzlei",
                        "datum": day.to_string(), "uhrzeitVon": format!("{hour:02}:00:00"), "uhrzeitBis": format!("{hour:02}:45:00"),
                    }))
                })
                .collect(),
        );
    }
    rig.google.set_quotas(Quotas {
        window: Duration::from_secs(60),
        per_user: Some(600),
        per_project: Some(10_000),
    });
    rig.google.set_latency(latency);
    rig.advoware.set_latency(latency);
    println!(
        "{employees} employees x {appointments} appointments, {} ms per upstream call, quotas 600/min per mailbox and 10,000/min per project",
        latency.as_millis()
    );

    let first = sync_all(&rig, employees).await;
    print("first full sync", &first);
    let quiet = sync_all(&rig, employees).await;
    print("incremental, nothing changed (sees its own writes)", &quiet);
    let quiet_again = sync_all(&rig, employees).await;
    print("incremental, nothing changed", &quiet_again);
    for list in &numbers {
        for fr_nr in list.iter().step_by(100) {
            rig.advoware.user_update(*fr_nr, json!({ "ort": "Saal 2" }));
        }
    }
    let changed = sync_all(&rig, employees).await;
    print("incremental, 1 % changed in Advoware", &changed);
    println!("reference deployment: about 10 employees in 2-3 minutes, one after another");
}

struct Outcome {
    wall: Duration,
    /// CPU seconds of this process (host, simulators) and of Redis over the run.
    cpu: (f64, f64),
    reports: Vec<Value>,
    google_reads: usize,
    google_writes: usize,
}

/// Triggers every employee and waits for all their reports.
async fn sync_all(rig: &CalendarRig, employees: usize) -> Outcome {
    let calls_before = rig.google.calls().len();
    let since = Utc::now().to_rfc3339();
    let cpu_before = CpuReading::now(bitbylaw_tests::REDIS_URL).await;
    let started = Instant::now();
    let (status, answer) = rig.trigger(json!({ "kuerzel": "ALL" })).await;
    assert_eq!(status, 200, "{answer}");
    let reports = loop {
        let reports: Vec<Value> = rig
            .status()
            .await
            .into_iter()
            .filter(|r| r["started_at"].as_str().is_some_and(|s| s > since.as_str()))
            .collect();
        if reports.len() == employees {
            break reports;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not done in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed();
    let cpu = CpuReading::now(bitbylaw_tests::REDIS_URL)
        .await
        .since(&cpu_before);
    let calls: Vec<_> = rig.google.calls().into_iter().skip(calls_before).collect();
    Outcome {
        wall,
        cpu,
        google_reads: calls.iter().filter(|c| c.method == "GET").count(),
        google_writes: calls.iter().filter(|c| c.method != "GET").count(),
        reports,
    }
}

fn print(name: &str, outcome: &Outcome) {
    let sum = |side: &str| -> u64 {
        outcome
            .reports
            .iter()
            .map(|r| {
                ["created", "updated", "deleted", "restored", "linked"]
                    .iter()
                    .map(|k| r[side][k].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .sum()
    };
    let not_ok: Vec<String> = outcome
        .reports
        .iter()
        .filter(|r| r["outcome"] != "ok")
        .map(|r| format!("{} {} {}", r["kuerzel"], r["outcome"], r["error"]))
        .collect();
    let mut durations: Vec<u64> = outcome
        .reports
        .iter()
        .map(|r| r["duration_ms"].as_u64().unwrap_or(0))
        .collect();
    durations.sort_unstable();
    let employees = outcome.reports.len().max(1) as f64;
    println!(
        "{name}: {:.1} s wall for all; CPU {:.2} s in this process (host and simulators) + {:.2} s Redis = {:.3} s per employee; per employee run p50 {} ms, max {} ms; writes Google {} Advoware {}; Google calls: {} reads ({:.1} per employee), {} writes; not ok: {:?}",
        outcome.wall.as_secs_f64(),
        outcome.cpu.0,
        outcome.cpu.1,
        (outcome.cpu.0 + outcome.cpu.1) / employees,
        durations[durations.len() / 2],
        durations.last().copied().unwrap_or(0),
        sum("google"),
        sum("advoware"),
        outcome.google_reads,
        outcome.google_reads as f64 / outcome.reports.len() as f64,
        outcome.google_writes,
        not_ok,
    );
}
