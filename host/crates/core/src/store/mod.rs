//! Shared state behind one interface, with two backends:
//! [`redis`] for production (durable, shared by every host instance) and
//! [`memory`] for demos and single-process tests (neither durable nor shared).
//! Both pass the same conformance suite (`tests/store_conformance.rs`).
//!
//! Keys are built by the host, never by plugins: [`Scope`] puts the tenant
//! (as a Redis Cluster hash tag) and the plugin in front of every key.

pub mod memory;
pub mod redis;

use std::time::Duration;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The backend could not be reached or failed; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation cannot succeed as asked (wrong type, bad argument).
    #[error("invalid store operation: {0}")]
    Invalid(String),
}

/// Most members a set may hold: sets record work (ids seen, ids pending), and
/// one that grows without bound is a plugin bug that must not fill the store.
pub const MAX_SET_MEMBERS: usize = 100_000;

fn set_full() -> StoreError {
    StoreError::Invalid(format!(
        "the set would hold more than {MAX_SET_MEMBERS} members"
    ))
}

/// A tenant's allowance of stored bytes for its plugins' `kv` keys, and where
/// the ledger counting them lives. A key counts its name plus its value (or
/// its members; a counter counts 20). Writes that would grow the total past
/// the limit are refused as `Invalid`; shrinking and deleting always work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// `<prefix>:{<tenant>}:`: every key of the tenant starts with it.
    tenant_base: String,
    /// Hash of counted key -> bytes, and `#total`.
    ledger: String,
    /// Counted keys with an expiry, by expiry time, so they leave the ledger.
    expiring: String,
    limit_bytes: u64,
}

impl Quota {
    pub fn new(prefix: &str, tenant: &str, limit_bytes: u64) -> Self {
        let tenant_base = format!("{prefix}:{{{tenant}}}:");
        // `#` cannot start a plugin name, so these never meet a plugin's keys.
        Self {
            ledger: format!("{tenant_base}#usage"),
            expiring: format!("{tenant_base}#usage-expiring"),
            tenant_base,
            limit_bytes,
        }
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    fn exceeded(&self) -> StoreError {
        StoreError::Invalid(format!(
            "the tenant's stored data would exceed its quota of {} bytes (limits.stored_bytes)",
            self.limit_bytes
        ))
    }
}

/// Bytes a counter counts beside its name (an `i64` in decimal, at most).
const COUNTER_BYTES: u64 = 20;

/// The outcome of taking tokens from a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: u32,
    /// When refused: how long until enough tokens are there.
    pub retry_after: Duration,
}

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub capacity: u32,
    pub refill_per_second: f64,
}

impl Bucket {
    /// Refuses shapes that could never hand out `tokens`.
    pub fn check(&self, tokens: u32) -> Result<(), StoreError> {
        if self.capacity == 0 {
            return Err(StoreError::Invalid(
                "bucket capacity must be at least 1".into(),
            ));
        }
        if !(self.refill_per_second.is_finite() && self.refill_per_second >= 0.0) {
            return Err(StoreError::Invalid(
                "refill rate must be a finite number ≥ 0".into(),
            ));
        }
        if tokens == 0 || tokens > self.capacity {
            return Err(StoreError::Invalid(format!(
                "tokens must be between 1 and the capacity ({})",
                self.capacity
            )));
        }
        Ok(())
    }
}

/// The state store: one of the backends. An enum rather than a trait object so
/// calls are direct and the backends stay easy to find.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Memory(store) => store.$method($($arg),*).await,
            Store::Redis(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self.ping())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        delegate!(self.get(key))
    }

    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        delegate!(self.set(key, value, ttl))
    }

    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        delegate!(self.delete(key))
    }

    /// Every key starting with `prefix` and its time to live, for operators
    /// (the dashboard's locks). `prefix` must hold a tenant's hash tag: a
    /// cluster is asked on the node of that slot.
    pub async fn keys_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Option<Duration>)>, StoreError> {
        delegate!(self.keys_with_prefix(prefix))
    }

    /// What the tenant of `quota` keeps in kv, as counted against it.
    pub async fn stored_bytes(&self, quota: &Quota) -> Result<u64, StoreError> {
        delegate!(self.stored_bytes(quota))
    }

    /// `set` of a plugin's key, counted against the tenant's `quota`.
    pub async fn kv_set(
        &self,
        quota: &Quota,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        delegate!(self.kv_set(quota, key, value, ttl))
    }

    /// `delete` of a plugin's key (value or set), freeing its part of the quota.
    pub async fn kv_delete(&self, quota: &Quota, key: &str) -> Result<bool, StoreError> {
        delegate!(self.kv_delete(quota, key))
    }

    /// Adds `delta` to the counter at `key` (missing counts as 0).
    pub async fn kv_incr(&self, quota: &Quota, key: &str, delta: i64) -> Result<i64, StoreError> {
        delegate!(self.kv_incr(quota, key, delta))
    }

    /// Adds members; returns those that were not in the set before, in the order given.
    pub async fn kv_set_add(
        &self,
        quota: &Quota,
        key: &str,
        members: &[String],
    ) -> Result<Vec<String>, StoreError> {
        delegate!(self.kv_set_add(quota, key, members))
    }

    pub async fn kv_set_remove(
        &self,
        quota: &Quota,
        key: &str,
        members: &[String],
    ) -> Result<u32, StoreError> {
        delegate!(self.kv_set_remove(quota, key, members))
    }

    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        delegate!(self.set_members(key))
    }

    /// Takes the lock if free; true when `token` now holds it.
    pub async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        delegate!(self.lock_acquire(key, token, ttl))
    }

    /// Extends the lock only while `token` holds it.
    pub async fn lock_extend(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        delegate!(self.lock_extend(key, token, ttl))
    }

    /// Releases the lock only while `token` holds it.
    pub async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        delegate!(self.lock_release(key, token))
    }

    /// Deletes `key` only while it holds `value`, atomically (a lock release is exactly that).
    pub async fn delete_if_equal(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        delegate!(self.lock_release(key, value))
    }

    /// Takes `tokens` from the bucket at `key` if they are there, atomically.
    pub async fn rate_take(
        &self,
        key: &str,
        bucket: Bucket,
        tokens: u32,
    ) -> Result<RateDecision, StoreError> {
        bucket.check(tokens)?;
        delegate!(self.rate_take(key, bucket, tokens))
    }

    /// Takes `tokens` from every bucket in `buckets` or from none, atomically
    /// and in one round trip: a call that needs room in several quotas (a
    /// mailbox's and the project's) spends none when one of them is empty.
    pub async fn rate_take_all(
        &self,
        buckets: &[(&str, Bucket)],
        tokens: u32,
    ) -> Result<RateDecision, StoreError> {
        if buckets.is_empty() {
            return Err(StoreError::Invalid("no bucket to take from".into()));
        }
        for (i, (key, bucket)) in buckets.iter().enumerate() {
            bucket.check(tokens)?;
            if buckets[..i].iter().any(|(other, _)| other == key) {
                return Err(StoreError::Invalid(format!("bucket {key} named twice")));
            }
        }
        delegate!(self.rate_take_all(buckets, tokens))
    }

    /// Takes one token from the bucket at `key`, waiting for room until
    /// `until`; returns how long it waited, or `Err(NoRoom)` when there is
    /// none in time. An upstream's quota kept in the store must not become an
    /// outage of that upstream: when the store cannot be asked, the call goes
    /// ahead (a warning says so), as the ingress limiter does.
    pub async fn rate_wait(
        &self,
        key: &str,
        bucket: Bucket,
        until: tokio::time::Instant,
    ) -> Result<Duration, NoRoom> {
        self.rate_wait_all(&[(key, bucket)], until).await
    }

    /// [`Store::rate_wait`] for a token from each of several buckets, all or
    /// none ([`Store::rate_take_all`]): one round trip per try.
    pub async fn rate_wait_all(
        &self,
        buckets: &[(&str, Bucket)],
        until: tokio::time::Instant,
    ) -> Result<Duration, NoRoom> {
        if buckets.is_empty() {
            return Ok(Duration::ZERO);
        }
        let mut waited = Duration::ZERO;
        loop {
            let decision = match self.rate_take_all(buckets, 1).await {
                Ok(decision) => decision,
                Err(error) => {
                    let names: Vec<&str> = buckets.iter().map(|(key, _)| *key).collect();
                    tracing::warn!(%error, buckets = ?names, "quota bucket unreachable; call goes ahead");
                    return Ok(waited);
                }
            };
            if decision.allowed {
                return Ok(waited);
            }
            let wait = decision.retry_after.max(Duration::from_millis(1));
            if tokio::time::Instant::now() + wait > until {
                return Err(NoRoom);
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }
}

/// A bucket with no room within the time a call may wait ([`Store::rate_wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

/// The key space of one tenant's plugin: `<prefix>:{<tenant>}:<plugin>:`.
/// The braces make the tenant the Redis Cluster hash tag, so all of a tenant's
/// keys live on one shard and multi-key scripts stay possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    base: String,
}

/// Longest key a plugin may name; longer is almost certainly a bug.
const MAX_KEY_LEN: usize = 1024;

impl Scope {
    pub fn new(prefix: &str, tenant: &str, plugin: &str) -> Self {
        Self {
            base: format!("{prefix}:{{{tenant}}}:{plugin}:"),
        }
    }

    /// Everything of this tenant and plugin starts with this.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn kv(&self, key: &str) -> Result<String, StoreError> {
        self.join("kv", key)
    }

    pub fn lock(&self, name: &str) -> Result<String, StoreError> {
        self.join("lock", name)
    }

    pub fn bucket(&self, name: &str) -> Result<String, StoreError> {
        self.join("rl", name)
    }

    fn join(&self, kind: &str, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("key must not be empty".into()));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::Invalid(format!(
                "key longer than {MAX_KEY_LEN} bytes"
            )));
        }
        Ok(format!("{}{kind}:{key}", self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_puts_tenant_in_hash_tag() {
        let scope = Scope::new("bbl", "firm-a", "hello");
        assert_eq!(scope.kv("visits").unwrap(), "bbl:{firm-a}:hello:kv:visits");
        assert_eq!(scope.lock("sync").unwrap(), "bbl:{firm-a}:hello:lock:sync");
        // A plugin naming another tenant's tag stays inside its own scope.
        assert_eq!(
            scope.kv("}:x:{firm-b}").unwrap(),
            "bbl:{firm-a}:hello:kv:}:x:{firm-b}"
        );
        assert!(scope.kv("").is_err());
    }
}
