//! The Redis backend: `redis` with a reconnecting connection manager (or a
//! cluster connection), and Lua scripts (in `lua/`) wherever an operation must
//! read and write atomically.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Script, Value};

use super::{Bucket, Quota, RateDecision, StoreError};
use crate::secret::Secret;

/// Short timeouts: a stuck Redis must fail the call (and the guest decides), not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RedisStore {
    client: std::sync::Arc<Client>,
    connection: RedisConnection,
    scripts: std::sync::Arc<Scripts>,
}

/// Where the store lives: one Redis, or a Redis Cluster. Every key of a tenant
/// carries the tenant's hash tag, so a tenant's multi-key scripts and streams
/// stay in one slot and the same commands work on both. (Sizes differ; it is
/// made once and kept behind an `Arc`.)
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// A connection to either kind of deployment; callers send raw commands on it.
#[derive(Clone)]
pub enum RedisConnection {
    /// The shared, reconnecting connection to one Redis.
    Managed(ConnectionManager),
    /// A connection of its own to one Redis (for blocking reads).
    Dedicated(MultiplexedConnection),
    /// Connections to every primary of a cluster, routed by key slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Managed(c) => c.req_packed_command(cmd),
            Self::Dedicated(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Dedicated(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(c) => c.get_db(),
            Self::Dedicated(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

struct Scripts {
    kv: Script,
    lock_extend: Script,
    lock_release: Script,
    rate_take_all: Script,
    scan_step: Script,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`), with the password given apart.
    /// Fails when Redis cannot be reached now; later outages are reconnected.
    pub async fn connect(url: &str, password: Option<&Secret>) -> Result<Self, StoreError> {
        let mut info = url
            .into_connection_info()
            .map_err(|e| StoreError::Invalid(format!("bad Redis URL: {e}")))?;
        if let Some(password) = password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3);
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        Ok(Self::with(
            Client::Single(client),
            RedisConnection::Managed(connection),
        ))
    }

    /// Connects to a Redis Cluster through any of its `nodes` (`redis://host:port`);
    /// the client learns the others and follows slot moves and fail-overs.
    pub async fn connect_cluster(
        nodes: &[String],
        password: Option<&Secret>,
    ) -> Result<Self, StoreError> {
        if nodes.is_empty() {
            return Err(StoreError::Invalid(
                "a cluster needs at least one node".into(),
            ));
        }
        let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3);
        if let Some(password) = password {
            builder = builder.password(password.expose());
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::Invalid(format!("bad Redis Cluster node list: {e}")))?;
        let connection = client
            .get_async_connection_with_config(cluster_config(RESPONSE_TIMEOUT))
            .await
            .map_err(unavailable)?;
        Ok(Self::with(
            Client::Cluster(client),
            RedisConnection::Cluster(connection),
        ))
    }

    fn with(client: Client, connection: RedisConnection) -> Self {
        Self {
            client: std::sync::Arc::new(client),
            connection,
            scripts: std::sync::Arc::new(Scripts {
                kv: Script::new(include_str!("lua/kv.lua")),
                lock_extend: Script::new(include_str!("lua/lock_extend.lua")),
                lock_release: Script::new(include_str!("lua/lock_release.lua")),
                rate_take_all: Script::new(include_str!("lua/rate_take_all.lua")),
                scan_step: Script::new(include_str!("lua/scan_step.lua")),
            }),
        }
    }

    /// The shared, reconnecting connection, for callers that need raw commands.
    pub fn connection(&self) -> RedisConnection {
        self.connection.clone()
    }

    /// A connection of its own, for blocking commands (`XREADGROUP ... BLOCK`)
    /// that would hold up everyone on the shared one.
    pub async fn dedicated_connection(
        &self,
        response_timeout: Duration,
    ) -> Result<RedisConnection, StoreError> {
        match self.client.as_ref() {
            Client::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(RedisConnection::Dedicated)
                    .map_err(unavailable)
            }
            Client::Cluster(client) => client
                .get_async_connection_with_config(cluster_config(response_timeout))
                .await
                .map(RedisConnection::Cluster)
                .map_err(unavailable),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.connection.clone().get(key).await.map_err(classify)
    }

    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(millis(ttl));
        }
        command
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(classify)
    }

    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let removed: u32 = self.connection.clone().del(key).await.map_err(classify)?;
        Ok(removed > 0)
    }

    pub async fn stored_bytes(&self, quota: &Quota) -> Result<u64, StoreError> {
        let total: Option<i64> = self
            .connection
            .clone()
            .hget(&quota.ledger, "#total")
            .await
            .map_err(classify)?;
        Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
    }

    pub async fn kv_set(
        &self,
        quota: &Quota,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let ttl_ms = ttl.map_or(0, millis);
        self.kv(quota, key, "set", |call| {
            call.arg(value).arg(ttl_ms);
        })
        .await
        .map(drop)
    }

    pub async fn kv_delete(&self, quota: &Quota, key: &str) -> Result<bool, StoreError> {
        let reply = self.kv(quota, key, "delete", |_| {}).await?;
        Ok(answer::<i64>(&reply)? > 0)
    }

    pub async fn kv_incr(&self, quota: &Quota, key: &str, delta: i64) -> Result<i64, StoreError> {
        let reply = self
            .kv(quota, key, "incr", |call| {
                call.arg(delta);
            })
            .await?;
        answer(&reply)
    }

    pub async fn kv_set_add(
        &self,
        quota: &Quota,
        key: &str,
        members: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self
            .kv(quota, key, "set-add", |call| {
                call.arg(super::MAX_SET_MEMBERS).arg(members);
            })
            .await?;
        reply[1..]
            .iter()
            .map(|member| redis::from_redis_value_ref(member).map_err(unexpected))
            .collect()
    }

    pub async fn kv_set_remove(
        &self,
        quota: &Quota,
        key: &str,
        members: &[String],
    ) -> Result<u32, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        let reply = self
            .kv(quota, key, "set-remove", |call| {
                call.arg(members);
            })
            .await?;
        answer(&reply)
    }

    /// Runs one `kv` write in `kv.lua`, with the tenant's ledger beside the key.
    /// The reply's first element says whether it was done (see the script).
    async fn kv(
        &self,
        quota: &Quota,
        key: &str,
        operation: &str,
        arguments: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<Vec<Value>, StoreError> {
        let mut call = self.scripts.kv.key(key);
        call.key(&quota.ledger)
            .key(&quota.expiring)
            .arg(operation)
            .arg(quota.limit_bytes);
        arguments(&mut call);
        let reply: Vec<Value> = call
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        match reply.first() {
            Some(Value::Int(1)) => Ok(reply),
            Some(Value::Int(0)) => Err(quota.exceeded()),
            Some(Value::Int(-1)) => Err(super::set_full()),
            other => Err(StoreError::Unavailable(format!(
                "unexpected answer from Redis: {other:?}"
            ))),
        }
    }

    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.connection
            .clone()
            .smembers(key)
            .await
            .map_err(classify)
    }

    pub async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        Ok(reply.is_some())
    }

    pub async fn lock_extend(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let extended: i64 = self
            .scripts
            .lock_extend
            .key(key)
            .arg(token)
            .arg(millis(ttl))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        Ok(extended == 1)
    }

    /// Every key starting with `prefix` (which holds a tenant's hash tag) and
    /// its time to live; SCAN in steps, so Redis is never held for long.
    pub async fn keys_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Option<Duration>)>, StoreError> {
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor = "0".to_owned();
        let mut found = Vec::new();
        loop {
            let reply: Vec<Value> = self
                .scripts
                .scan_step
                .key(prefix)
                .arg(&cursor)
                .arg(&pattern)
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(classify)?;
            let mut items = reply.into_iter();
            let odd =
                |e: redis::ParsingError| StoreError::Unavailable(format!("odd SCAN reply: {e}"));
            cursor = items
                .next()
                .map(redis::from_redis_value::<String>)
                .transpose()
                .map_err(odd)?
                .unwrap_or_else(|| "0".to_owned());
            while let (Some(key), Some(ttl)) = (items.next(), items.next()) {
                let key: String = redis::from_redis_value(key).map_err(odd)?;
                let ttl: i64 = redis::from_redis_value(ttl).map_err(odd)?;
                let ttl = u64::try_from(ttl).ok().map(Duration::from_millis);
                found.push((key, ttl));
            }
            if cursor == "0" {
                break;
            }
        }
        found.sort();
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }

    pub async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let released: i64 = self
            .scripts
            .lock_release
            .key(key)
            .arg(token)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        Ok(released == 1)
    }

    pub async fn rate_take(
        &self,
        key: &str,
        bucket: Bucket,
        tokens: u32,
    ) -> Result<RateDecision, StoreError> {
        self.rate_take_all(&[(key, bucket)], tokens).await
    }
}

impl RedisStore {
    /// `tokens` from every bucket in `buckets`, or from none, in one round trip.
    pub async fn rate_take_all(
        &self,
        buckets: &[(&str, Bucket)],
        tokens: u32,
    ) -> Result<RateDecision, StoreError> {
        let mut invocation = self.scripts.rate_take_all.prepare_invoke();
        invocation.arg(tokens);
        for (key, bucket) in buckets {
            invocation
                .key(*key)
                .arg(bucket.capacity)
                .arg(bucket.refill_per_second / 1000.0);
        }
        let (allowed, remaining, retry_ms): (i64, i64, i64) = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        Ok(decision(allowed, remaining, retry_ms))
    }
}

fn decision(allowed: i64, remaining: i64, retry_ms: i64) -> RateDecision {
    RateDecision {
        allowed: allowed == 1,
        remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
        retry_after: if retry_ms < 0 {
            Duration::MAX
        } else {
            Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0))
        },
    }
}

/// The value after the status in a `kv.lua` reply.
fn answer<T: redis::FromRedisValue>(reply: &[Value]) -> Result<T, StoreError> {
    let value = reply
        .get(1)
        .ok_or_else(|| StoreError::Unavailable("short answer from Redis".into()))?;
    redis::from_redis_value_ref(value).map_err(unexpected)
}

fn unexpected(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("unexpected answer from Redis: {error}"))
}

/// `text` as a literal in a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn cluster_config(response_timeout: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(response_timeout)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Errors Redis gives for the request itself (wrong type, not an integer) are
/// `Invalid`; everything else (I/O, timeouts, loading) may pass.
pub fn classify(error: redis::RedisError) -> StoreError {
    match error.kind() {
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
        | redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
        | redis::ErrorKind::UnexpectedReturnType
        | redis::ErrorKind::Parse => StoreError::Invalid(error.to_string()),
        _ if error.to_string().contains("WRONGTYPE") => StoreError::Invalid(error.to_string()),
        _ => unavailable(error),
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}
