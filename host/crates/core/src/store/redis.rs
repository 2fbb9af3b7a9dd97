//! The Redis backend: `redis` with a reconnecting connection manager, and Lua
//! scripts (in `lua/`) wherever an operation must read and write atomically.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo, Script};

use super::{Bucket, RateDecision, StoreError};
use crate::secret::Secret;

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    set_add: Script,
    lock_extend: Script,
    lock_release: Script,
    rate_take: Script,
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
        // Short timeouts: a stuck Redis must fail the call (and the guest decides), not hang it.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            client,
            connection,
            scripts: std::sync::Arc::new(Scripts {
                set_add: Script::new(include_str!("lua/set_add.lua")),
                lock_extend: Script::new(include_str!("lua/lock_extend.lua")),
                lock_release: Script::new(include_str!("lua/lock_release.lua")),
                rate_take: Script::new(include_str!("lua/rate_take.lua")),
            }),
        })
    }

    /// The shared, reconnecting connection, for callers that need raw commands.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// A connection of its own, for blocking commands (`XREADGROUP ... BLOCK`)
    /// that would hold up everyone on the shared one.
    pub async fn dedicated_connection(
        &self,
        response_timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)
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

    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.connection
            .clone()
            .incr(key, delta)
            .await
            .map_err(classify)
    }

    pub async fn set_add(&self, key: &str, members: &[String]) -> Result<Vec<String>, StoreError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let reply: redis::Value = self
            .scripts
            .set_add
            .key(key)
            .arg(super::MAX_SET_MEMBERS)
            .arg(members)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        match reply {
            redis::Value::Int(-1) => Err(super::set_full()),
            other => redis::from_redis_value_ref(&other)
                .map_err(|e| StoreError::Unavailable(format!("unexpected answer from Redis: {e}"))),
        }
    }

    pub async fn set_remove(&self, key: &str, members: &[String]) -> Result<u32, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        self.connection
            .clone()
            .srem(key, members)
            .await
            .map_err(classify)
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
        let (allowed, remaining, retry_ms): (i64, i64, i64) = self
            .scripts
            .rate_take
            .key(key)
            .arg(bucket.capacity)
            .arg(bucket.refill_per_second / 1000.0)
            .arg(tokens)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(classify)?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            retry_after: if retry_ms < 0 {
                Duration::MAX
            } else {
                Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0))
            },
        })
    }
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
