//! Which Redis the tests talk to: the machine's one on 6379, or — with
//! `TEST_REDIS_TARGET=cluster` — a three-node Redis Cluster that this test
//! process starts on first use. `scripts/test.sh` runs the store and event
//! suites a second time that way.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::{Cmd, ConnectionLike, RedisResult, Value};

use crate::REDIS_URL;

/// Set to `cluster` to run against a Redis Cluster of the test's own. (Not
/// `BITBYLAW_…`: the host reads those as overrides of its config.)
pub const TARGET_VARIABLE: &str = "TEST_REDIS_TARGET";

/// True when this test process runs against a Redis Cluster.
pub fn on_cluster() -> bool {
    std::env::var(TARGET_VARIABLE).is_ok_and(|value| value == "cluster")
}

/// The `[store]` keys that point a host at the tests' Redis.
pub fn store_toml() -> String {
    if on_cluster() {
        let nodes: Vec<String> = redis_cluster()
            .nodes()
            .iter()
            .map(|url| format!("\"{url}\""))
            .collect();
        format!("redis_cluster = [{}]", nodes.join(", "))
    } else {
        format!("redis_url = \"{REDIS_URL}\"")
    }
}

/// A store connected as the host would be, for tests of the store itself.
pub async fn connect_store() -> bitbylaw::store::RedisStore {
    if on_cluster() {
        bitbylaw::store::RedisStore::connect_cluster(redis_cluster().nodes(), None)
            .await
            .unwrap()
    } else {
        bitbylaw::store::RedisStore::connect(REDIS_URL, None)
            .await
            .unwrap()
    }
}

/// A blocking connection for looking at what the host wrote; on a cluster,
/// commands are routed by key slot and `KEYS` asks every primary.
pub enum TestConnection {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

/// Opens a [`TestConnection`] to the tests' Redis.
pub fn connect() -> RedisResult<TestConnection> {
    if on_cluster() {
        let client = redis::cluster::ClusterClient::new(redis_cluster().nodes().to_vec())?;
        Ok(TestConnection::Cluster(Box::new(client.get_connection()?)))
    } else {
        Ok(TestConnection::Single(
            redis::Client::open(REDIS_URL)?.get_connection()?,
        ))
    }
}

macro_rules! delegate {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            TestConnection::Single(c) => c.$method($($arg),*),
            TestConnection::Cluster(c) => c.$method($($arg),*),
        }
    };
}

impl ConnectionLike for TestConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        delegate!(self.req_packed_command(cmd))
    }
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        delegate!(self.req_packed_commands(cmd, offset, count))
    }
    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        delegate!(self.req_command(cmd))
    }
    fn get_db(&self) -> i64 {
        delegate!(self.get_db())
    }
    fn supports_pipelining(&self) -> bool {
        delegate!(self.supports_pipelining())
    }
    fn check_connection(&mut self) -> bool {
        delegate!(self.check_connection())
    }
    fn is_open(&self) -> bool {
        delegate!(self.is_open())
    }
}

/// Three primaries on free ports, no replicas, nothing on disk.
pub struct RedisCluster {
    nodes: Vec<String>,
    /// The shells that stop their node when the test process is gone.
    _watchdogs: Vec<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// `redis://127.0.0.1:<port>` of every node.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Distinct ports whose bus ports (`+10000`) are none of the others either.
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let port = free_cluster_port();
            let taken = ports.iter().any(|p| {
                [*p, p + 10_000].contains(&port) || [*p, p + 10_000].contains(&(port + 10_000))
            });
            if !taken {
                ports.push(port);
            }
        }
        let test_process = std::process::id();
        let mut watchdogs = Vec::new();
        for port in &ports {
            // The shell outlives nothing: it stops its node as soon as this
            // test process is gone, however it ended (statics are never dropped).
            let server = format!(
                "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes \
                 --cluster-config-file nodes-{port}.conf --cluster-node-timeout 2000 \
                 --save '' --appendonly no --dir {dir} --loglevel warning & node=$!; \
                 while kill -0 {test_process} 2>/dev/null && kill -0 $node 2>/dev/null; do sleep 0.5; done; \
                 kill $node 2>/dev/null; wait $node",
                dir = dir.path().display(),
            );
            let watchdog = Command::new("sh")
                .args(["-c", &server])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (scripts/ensure-redis.sh installs it)");
            watchdogs.push(watchdog);
        }
        for port in &ports {
            wait_until(|| ping(*port));
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(created.success(), "redis-cli --cluster create failed");
        for port in &ports {
            wait_until(|| cluster_ok(*port));
        }
        let nodes = ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        Self {
            nodes,
            _watchdogs: watchdogs,
            _dir: dir,
        }
    }
}

/// The cluster of this test process, started on first use.
pub fn redis_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

/// A port that is free, as is its cluster bus port (`port + 10000`).
fn free_cluster_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn node(port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()
}

fn ping(port: u16) -> bool {
    node(port).is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
}

fn cluster_ok(port: u16) -> bool {
    node(port).is_some_and(|mut c| {
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query::<String>(&mut c)
            .is_ok_and(|info| info.contains("cluster_state:ok"))
    })
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "the Redis Cluster did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}
