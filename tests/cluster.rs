//! Several host processes sharing one Redis: the cascade of a schedule fanning
//! out events, each handled exactly once; a killed instance's events finished
//! by the other; each schedule tick run once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bitbylaw_tests::{HostProcess, component, delete_prefix, redis_connection, wait_for};
use redis::Commands;

const ITEMS: usize = 200;

/// A host config and one tenant with the cascade plugin, under a fresh key prefix.
struct Cluster {
    dir: tempfile::TempDir,
    prefix: String,
}

impl Cluster {
    fn new(plugin_config: &str, subscription: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/component-cache");
        std::fs::write(
            dir.path().join("host.toml"),
            format!(
                r#"listen = "127.0.0.1:0"
[log]
filter = "warn,bitbylaw::events=info"
[store]
{}
key_prefix = "{prefix}"
[runtime]
cache_dir = "{}"
max_instances = 64
[plugin_defaults]
deadline_ms = 2000
[events]
visibility_timeout_ms = 3000
[ingress]
shutdown_grace_ms = 5000
"#,
                bitbylaw_tests::redis_target::store_toml(),
                cache.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        std::fs::write(
            dir.path().join("tenants/firm-a.toml"),
            format!(
                "[plugins.cascade]\ncomponent = \"{}\"\n[plugins.cascade.config]\nitems = {ITEMS}\n{plugin_config}\n[plugins.cascade.subscriptions.item]\n{subscription}\n",
                component("cascade").display()
            ),
        )
        .unwrap();
        Self { dir, prefix }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("host.toml")
    }

    fn start(&self, name: &str) -> HostProcess {
        HostProcess::spawn(
            &self.config(),
            &self.dir.path().join(format!("{name}.log")),
            &[("BITBYLAW_EVENTS__CONSUMER_NAME", name)],
        )
    }

    fn kv(&self, key: &str) -> String {
        format!("{}:{{firm-a}}:cascade:kv:{key}", self.prefix)
    }

    fn counter(&self, key: &str) -> i64 {
        let value: Option<i64> = redis_connection().get(self.kv(key)).unwrap();
        value.unwrap_or(0)
    }

    /// How often each item was handled, in item order.
    fn handled(&self) -> Vec<i64> {
        let keys: Vec<String> = (0..ITEMS)
            .map(|i| self.kv(&format!("handled:{i}")))
            .collect();
        let values: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(keys)
            .query(&mut redis_connection())
            .unwrap();
        values.into_iter().map(|v| v.unwrap_or(0)).collect()
    }

    /// Events taken but not finished, across instances.
    fn pending(&self) -> u64 {
        let stream = format!("{}:{{firm-a}}:ev:topic:item", self.prefix);
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("cascade")
            .query(&mut redis_connection())
            .unwrap();
        match summary {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        }
    }

    fn pending_of(&self, consumer: &str) -> u64 {
        let stream = format!("{}:{{firm-a}}:ev:topic:item", self.prefix);
        let consumers: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg("cascade")
            .query(&mut redis_connection())
            .unwrap_or_default();
        consumers
            .iter()
            .find(|c| {
                c.get("name")
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .as_deref()
                    == Some(consumer)
            })
            .and_then(|c| {
                c.get("pending")
                    .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            })
            .unwrap_or(0)
    }

    fn ticks(&self) -> Vec<i64> {
        self.tick_set("ticks")
    }

    fn tick_set(&self, name: &str) -> Vec<i64> {
        let mut ticks: Vec<i64> = redis_connection().smembers(self.kv(name)).unwrap();
        ticks.sort();
        ticks
    }

    /// The instance holding the schedule's run lease (its consumer name first).
    fn runner(&self) -> Option<String> {
        redis_connection()
            .get(format!(
                "{}:{{firm-a}}:sched:cascade:fanout:running",
                self.prefix
            ))
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        delete_prefix(&self.prefix);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_across_two_processes_handles_each_item_exactly_once() {
    let cluster = Cluster::new("", "");
    let mut a = cluster.start("a");
    let mut b = cluster.start("b");

    wait_for(Duration::from_secs(60), || async {
        (cluster.counter("handled-total") >= ITEMS as i64).then_some(())
    })
    .await;
    // Quiet: nothing pending, nothing waiting for a retry.
    wait_for(Duration::from_secs(30), || async {
        let retrying: u64 = redis_connection()
            .zcard(format!("{}:{{firm-a}}:ev:retry", cluster.prefix))
            .unwrap();
        (cluster.pending() == 0 && retrying == 0).then_some(())
    })
    .await;
    let handled = cluster.handled();
    let wrong: Vec<(usize, i64)> = handled
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "items not handled exactly once: {wrong:?}"
    );
    assert_eq!(cluster.counter("handled-total"), ITEMS as i64);

    // Each tick ran once, though both processes run the schedule.
    wait_for(Duration::from_secs(10), || async {
        (cluster.ticks().len() >= 3).then_some(())
    })
    .await;
    // SIGTERM: both stop cleanly, finishing what they run; then the figures hold still.
    assert!(a.terminate().success(), "{}", a.log_text());
    assert!(b.terminate().success(), "{}", b.log_text());
    let (ticks, fires) = (cluster.ticks(), cluster.counter("fires"));
    assert_eq!(
        fires,
        ticks.len() as i64,
        "a tick ran twice: {fires} runs for {} ticks",
        ticks.len()
    );
    assert!(
        ticks.iter().all(|t| t % 1000 == 0),
        "ticks fall on whole seconds: {ticks:?}"
    );
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == 1000),
        "consecutive seconds: {ticks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_killed_process_are_finished_by_the_other() {
    // Slow items, few at a time: plenty in flight when the first process dies.
    let cluster = Cluster::new("work_ms = 100", "concurrency = 4");
    let mut a = cluster.start("a");
    let _b = cluster.start("b");

    wait_for(Duration::from_secs(60), || async {
        (cluster.counter("handled-total") >= 10 && cluster.pending_of("a") > 0).then_some(())
    })
    .await;
    a.kill();
    let killed_with = cluster.counter("handled-total");
    assert!(
        killed_with < ITEMS as i64,
        "everything was done before the kill"
    );

    // The survivor takes over a's events after the visibility timeout (3 s).
    let handled = wait_for(Duration::from_secs(60), || async {
        let handled = cluster.handled();
        handled.iter().all(|n| *n >= 1).then_some(handled)
    })
    .await;
    assert_eq!(handled.len(), ITEMS);
    wait_for(Duration::from_secs(30), || async {
        (cluster.pending() == 0).then_some(())
    })
    .await;
}

/// An instance killed while it runs a tick: the other instance runs that tick
/// once the run lease has expired, and no tick runs twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_whose_runner_was_killed_runs_on_the_other_instance() {
    let cluster = Cluster::new(
        "tick_ms = 1500\n[plugins.cascade.schedules.fanout]\ncron = \"*/3 * * * * *\"",
        "",
    );
    let mut a = cluster.start("a");
    let mut b = cluster.start("b");
    // A tick that has started and not finished, and who runs it.
    let (tick, runner) = wait_for(Duration::from_secs(25), || async {
        let started = cluster.tick_set("started");
        let done = cluster.ticks();
        let running = started.into_iter().find(|t| !done.contains(t))?;
        Some((running, cluster.runner()?))
    })
    .await;
    let survivor = if runner.starts_with("a-") {
        a.kill();
        &mut b
    } else {
        assert!(runner.starts_with("b-"), "{runner}");
        b.kill();
        &mut a
    };
    wait_for(Duration::from_secs(30), || async {
        cluster.ticks().contains(&tick).then_some(())
    })
    .await;
    assert!(survivor.terminate().success(), "{}", survivor.log_text());
    let ticks = cluster.ticks();
    assert_eq!(
        cluster.counter("fires"),
        ticks.len() as i64,
        "a tick completed twice: {ticks:?}"
    );
}
