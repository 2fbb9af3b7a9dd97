//! Redis going away under load: the host keeps serving what does not need the
//! store, answers 503 quickly for what does, and recovers by itself when Redis
//! is back. Against a Redis process of the test's own (the machine's is shared).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitbylaw_tests::{Backend, TestHost, Traffic, wait_for};
use tokio::time::Instant;

/// A `redis-server` of this test on `port`, nothing kept on disk.
struct OwnRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/ensure-redis.sh installs it)");
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        wait_for(Duration::from_secs(10), || async {
            let client = redis::Client::open(redis.url()).ok()?;
            let mut connection = client.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut connection).ok()
        })
        .await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Still there but answering nothing, as a Redis stuck on a slow disk or a
    /// half-open connection looks.
    fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Gone at once, as a crash or a network cut would leave it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A host on `redis` with a tenant whose hello plugin needs the store and whose
/// noop plugin does not; hello answers once before the test breaks Redis.
async fn host_on(redis: &OwnRedis) -> TestHost {
    let app = TestHost::builder(Backend::Redis)
        .redis_url(&redis.url())
        .tenant("firm-a", Some("k"), TENANT)
        .start()
        .await;
    assert_eq!(app.get("/hello/x", "k").await.status(), 200);
    app
}

const TENANT: &str = "[plugins.hello]\ncomponent = \"{component:hello}\"\n[plugins.noop]\ncomponent = \"{component:noop}\"\n";

/// How long a request that needs the store may take to fail while Redis is
/// down (the store's connect and response timeouts, docs/deployment.md).
const OUTAGE_ANSWER_BOUND: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_answers_503_in_bounded_time_and_heals_by_itself() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let app = host_on(&redis).await;

    // Load that needs no store, all through the outage.
    let traffic = Traffic::start(app.client.clone(), app.url("/noop"), "k");
    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.get("/hello/x", "k").await;
        assert_eq!(response.status(), 503, "needs the store");
        assert!(
            started.elapsed() < OUTAGE_ANSWER_BOUND,
            "answered after {:?}",
            started.elapsed()
        );
    }
    let (status, ready) = app.ready_detail().await;
    assert_eq!(status, 503);
    assert_eq!(ready["store"]["reachable"], false, "{ready}");
    // A probe without the token learns which check failed.
    let probe = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(probe.status(), 503);
    let probe: serde_json::Value = probe.json().await.unwrap();
    assert_eq!(probe["checks"]["store_reachable"], false, "{probe}");
    assert_eq!(probe["checks"]["tenants_loaded"], true, "{probe}");

    let _redis = OwnRedis::start(port).await;
    wait_for(Duration::from_secs(30), || async {
        (app.get("/hello/x", "k").await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(app.ready_detail().await.0, 200);
    let answers = traffic.stop().await;
    assert!(!answers.is_empty());
    let failed: Vec<u16> = answers
        .iter()
        .map(|(status, _)| *status)
        .filter(|status| *status != 204)
        .collect();
    assert!(
        failed.is_empty(),
        "the route without store failed: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_answers_503_in_bounded_time_too() {
    let redis = OwnRedis::start(free_port()).await;
    let app = host_on(&redis).await;
    redis.freeze(true);
    for _ in 0..2 {
        let started = Instant::now();
        let response = app.get("/hello/x", "k").await;
        assert_eq!(response.status(), 503);
        assert!(
            started.elapsed() < OUTAGE_ANSWER_BOUND,
            "answered after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(app.get("/noop", "k").await.status(), 204);
    redis.freeze(false);
    wait_for(Duration::from_secs(30), || async {
        (app.get("/hello/x", "k").await.status() == 200).then_some(())
    })
    .await;
}

/// A schedule's tick that falls while Redis is gone is late, not lost: the
/// instance cannot claim it then and keeps trying until Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_that_falls_in_a_redis_outage_runs_after_it() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let app = TestHost::builder(Backend::Redis)
        .redis_url(&redis.url())
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.cascade]\ncomponent = \"{component:cascade}\"\n[plugins.cascade.config]\nitems = 0\n[plugins.cascade.schedules.fanout]\ncron = \"*/2 * * * * *\"\n",
        )
        .start()
        .await;
    let ticks_key = format!("{}:{{firm-a}}:cascade:kv:ticks", app.prefix);
    let ticks = |url: String, key: String| async move {
        let client = redis::Client::open(url).ok()?;
        let mut connection = client.get_connection().ok()?;
        redis::cmd("SMEMBERS")
            .arg(key)
            .query::<Vec<i64>>(&mut connection)
            .ok()
    };
    // The schedule runs.
    wait_for(Duration::from_secs(20), || async {
        ticks(redis.url(), ticks_key.clone())
            .await
            .filter(|ticks| !ticks.is_empty())
    })
    .await;

    redis.kill();
    let now_ms = chrono::Utc::now().timestamp_millis();
    // The next even second: a tick while Redis is gone.
    let missed = (now_ms / 2000 + 1) * 2000;
    let after_it = chrono::DateTime::from_timestamp_millis(missed + 1500).unwrap();
    wait_for(Duration::from_secs(10), || async {
        (chrono::Utc::now() >= after_it).then_some(())
    })
    .await;
    let redis = OwnRedis::start(port).await;
    let ran = wait_for(Duration::from_secs(30), || async {
        ticks(redis.url(), ticks_key.clone())
            .await
            .filter(|ticks| ticks.contains(&missed))
    })
    .await;
    assert!(ran.contains(&missed), "{ran:?}");
}
