//! The embedded backend: a map in this process. For demos and tests; state is
//! lost on restart and not shared between host instances. Behaves like the
//! Redis backend, expiry and atomicity included (one mutex, short sections).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Bucket, COUNTER_BYTES, Quota, RateDecision, StoreError};

#[derive(Clone, Default)]
pub struct MemoryStore {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    /// Calls since the last sweep of expired entries.
    calls: Arc<std::sync::atomic::AtomicU32>,
}

/// Expired entries nobody reads again (schedule claims, old leases) are swept
/// out every this many calls, so the map does not grow without end.
const SWEEP_EVERY: u32 = 1024;

struct Entry {
    value: Value,
    expires_at: Option<Instant>,
    /// Bytes this entry counts against its tenant's quota (plugin keys only).
    counted: u64,
}

impl Entry {
    fn new(value: Value, expires_at: Option<Instant>) -> Self {
        Self {
            value,
            expires_at,
            counted: 0,
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

enum Value {
    Bytes(Vec<u8>),
    Set(HashSet<String>),
    Bucket { tokens: f64, updated: Instant },
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The map with expired entries of `key` already gone.
    fn live(&self, key: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A poisoned lock only means another call panicked mid-update of a plain map;
        // the map itself is still consistent, so keep serving.
        let mut map = crate::sync::lock(&self.entries);
        let calls = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if calls % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let now = Instant::now();
            map.retain(|_, entry| entry.live(now));
        }
        if map
            .get(key)
            .and_then(|entry| entry.expires_at)
            .is_some_and(|at| at <= Instant::now())
        {
            map.remove(key);
        }
        map
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.live(key).get(key).map(|entry| &entry.value) {
            None => Ok(None),
            Some(Value::Bytes(bytes)) => Ok(Some(bytes.clone())),
            Some(_) => Err(wrong_type()),
        }
    }

    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let expires_at = ttl.map(|ttl| Instant::now() + ttl);
        self.live(key).insert(
            key.to_owned(),
            Entry::new(Value::Bytes(value.to_vec()), expires_at),
        );
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.live(key).remove(key).is_some())
    }

    pub async fn stored_bytes(&self, quota: &Quota) -> Result<u64, StoreError> {
        let map = crate::sync::lock(&self.entries);
        Ok(usage(&map, quota, Instant::now()))
    }

    pub async fn kv_set(
        &self,
        quota: &Quota,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut map = self.live(key);
        let size = counted(key, value.len());
        fits(&map, quota, key, size)?;
        let mut entry = Entry::new(
            Value::Bytes(value.to_vec()),
            ttl.map(|ttl| Instant::now() + ttl),
        );
        entry.counted = size;
        map.insert(key.to_owned(), entry);
        Ok(())
    }

    pub async fn kv_delete(&self, _quota: &Quota, key: &str) -> Result<bool, StoreError> {
        Ok(self.live(key).remove(key).is_some())
    }

    pub async fn kv_incr(&self, quota: &Quota, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut map = self.live(key);
        if !map.contains_key(key) {
            fits(&map, quota, key, counted(key, 0) + COUNTER_BYTES)?;
        }
        let entry = map.entry(key.to_owned()).or_insert_with(|| {
            let mut entry = Entry::new(Value::Bytes(b"0".to_vec()), None);
            entry.counted = counted(key, 0) + COUNTER_BYTES;
            entry
        });
        let Value::Bytes(bytes) = &mut entry.value else {
            return Err(wrong_type());
        };
        let current: i64 = std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| StoreError::Invalid("value is not an integer".into()))?;
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StoreError::Invalid("increment would overflow".into()))?;
        *bytes = next.to_string().into_bytes();
        Ok(next)
    }

    pub async fn kv_set_add(
        &self,
        quota: &Quota,
        key: &str,
        members: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut map = self.live(key);
        let (held, size) = match map.get(key) {
            None => (0, counted(key, 0)),
            Some(Entry {
                value: Value::Set(set),
                counted: size,
                ..
            }) => (set.len(), (*size).max(counted(key, 0))),
            Some(_) => return Err(wrong_type()),
        };
        let new: HashSet<&String> = match map.get(key).map(|entry| &entry.value) {
            Some(Value::Set(set)) => members.iter().filter(|m| !set.contains(*m)).collect(),
            _ => members.iter().collect(),
        };
        if new.is_empty() {
            return Ok(Vec::new());
        }
        if held + new.len() > super::MAX_SET_MEMBERS {
            return Err(super::set_full());
        }
        let grown = size + new.iter().map(|member| member.len() as u64).sum::<u64>();
        fits(&map, quota, key, grown)?;
        let entry = map
            .entry(key.to_owned())
            .or_insert_with(|| Entry::new(Value::Set(HashSet::new()), None));
        entry.counted = grown;
        let Value::Set(set) = &mut entry.value else {
            return Err(wrong_type());
        };
        Ok(members
            .iter()
            .filter(|member| set.insert((*member).clone()))
            .cloned()
            .collect())
    }

    pub async fn kv_set_remove(
        &self,
        _quota: &Quota,
        key: &str,
        members: &[String],
    ) -> Result<u32, StoreError> {
        let mut map = self.live(key);
        let Some(entry) = map.get_mut(key) else {
            return Ok(0);
        };
        let Value::Set(set) = &mut entry.value else {
            return Err(wrong_type());
        };
        let removed: Vec<&String> = members
            .iter()
            .filter(|member| set.remove(*member))
            .collect();
        let shrunk: u64 = removed.iter().map(|member| member.len() as u64).sum();
        entry.counted = entry.counted.saturating_sub(shrunk).max(counted(key, 0));
        if set.is_empty() {
            map.remove(key);
        }
        Ok(u32::try_from(removed.len()).unwrap_or(u32::MAX))
    }

    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        match self.live(key).get(key).map(|entry| &entry.value) {
            None => Ok(Vec::new()),
            Some(Value::Set(set)) => Ok(set.iter().cloned().collect()),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Every live key starting with `prefix` and its time to live.
    pub async fn keys_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Option<Duration>)>, StoreError> {
        let map = crate::sync::lock(&self.entries);
        let now = Instant::now();
        let mut found: Vec<(String, Option<Duration>)> = map
            .iter()
            .filter(|(key, entry)| key.starts_with(prefix) && entry.live(now))
            .map(|(key, entry)| (key.clone(), entry.expires_at.map(|at| at - now)))
            .collect();
        found.sort();
        Ok(found)
    }

    pub async fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut map = self.live(key);
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(
            key.to_owned(),
            Entry::new(
                Value::Bytes(token.as_bytes().to_vec()),
                Some(Instant::now() + ttl),
            ),
        );
        Ok(true)
    }

    pub async fn lock_extend(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut map = self.live(key);
        match map.get_mut(key) {
            Some(entry) if matches!(&entry.value, Value::Bytes(held) if held == token.as_bytes()) =>
            {
                entry.expires_at = Some(Instant::now() + ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub async fn lock_release(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let mut map = self.live(key);
        match map.get(key) {
            Some(entry) if matches!(&entry.value, Value::Bytes(held) if held == token.as_bytes()) =>
            {
                map.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub async fn rate_take(
        &self,
        key: &str,
        bucket: Bucket,
        tokens: u32,
    ) -> Result<RateDecision, StoreError> {
        self.rate_take_all(&[(key, bucket)], tokens).await
    }

    /// `tokens` from every bucket in `buckets`, or from none, under one lock.
    pub async fn rate_take_all(
        &self,
        buckets: &[(&str, Bucket)],
        tokens: u32,
    ) -> Result<RateDecision, StoreError> {
        let now = Instant::now();
        let Some((first, _)) = buckets.first() else {
            return Err(StoreError::Invalid("no bucket to take from".into()));
        };
        let mut map = self.live(first);
        // Refilled to now; the lowest count first decides.
        let mut levels = Vec::with_capacity(buckets.len());
        for (key, bucket) in buckets {
            let entry = map.entry((*key).to_owned()).or_insert_with(|| {
                Entry::new(
                    Value::Bucket {
                        tokens: f64::from(bucket.capacity),
                        updated: now,
                    },
                    None,
                )
            });
            let Value::Bucket {
                tokens: available,
                updated,
            } = &mut entry.value
            else {
                return Err(wrong_type());
            };
            let elapsed = now.saturating_duration_since(*updated).as_secs_f64();
            *available =
                (*available + elapsed * bucket.refill_per_second).min(f64::from(bucket.capacity));
            *updated = now;
            levels.push(*available);
        }
        // Each bucket's own decision on a copy; all allowed: taken from each.
        let decisions: Vec<RateDecision> = levels
            .iter()
            .zip(buckets)
            .map(|(level, (_, bucket))| token_bucket_decision(&mut level.clone(), *bucket, tokens))
            .collect();
        let allowed = decisions.iter().all(|d| d.allowed);
        let mut fewest = u32::MAX;
        for (key, bucket) in buckets {
            let Some(entry) = map.get_mut(*key) else {
                continue;
            };
            if let Value::Bucket {
                tokens: available, ..
            } = &mut entry.value
            {
                if allowed {
                    *available -= f64::from(tokens);
                }
                fewest = fewest.min(whole(*available));
                entry.expires_at = Some(now + time_to_full(*available, *bucket));
            }
        }
        Ok(RateDecision {
            allowed,
            remaining: fewest,
            retry_after: if allowed {
                Duration::ZERO
            } else {
                decisions
                    .iter()
                    .filter(|d| !d.allowed)
                    .map(|d| d.retry_after)
                    .max()
                    .unwrap_or(Duration::ZERO)
            },
        })
    }
}

/// Deducts `tokens` when available; otherwise says how long until they are. Shared
/// reasoning with `rate_take_all.lua`, which does the same in Redis.
fn token_bucket_decision(available: &mut f64, bucket: Bucket, tokens: u32) -> RateDecision {
    let wanted = f64::from(tokens);
    if *available >= wanted {
        *available -= wanted;
        RateDecision {
            allowed: true,
            remaining: whole(*available),
            retry_after: Duration::ZERO,
        }
    } else {
        let retry_after = if bucket.refill_per_second > 0.0 {
            Duration::from_secs_f64((wanted - *available) / bucket.refill_per_second)
        } else {
            Duration::MAX
        };
        RateDecision {
            allowed: false,
            remaining: whole(*available),
            retry_after,
        }
    }
}

/// After this long an untouched bucket is full again and can be forgotten.
fn time_to_full(available: f64, bucket: Bucket) -> Duration {
    if bucket.refill_per_second > 0.0 {
        let missing = (f64::from(bucket.capacity) - available).max(0.0);
        Duration::from_secs_f64(missing / bucket.refill_per_second + 1.0)
    } else {
        Duration::from_secs(24 * 3600)
    }
}

fn whole(tokens: f64) -> u32 {
    // `as` saturates for floats, which is what we want here.
    tokens.floor() as u32
}

/// What a key holding `bytes` counts against its tenant's quota.
fn counted(key: &str, bytes: usize) -> u64 {
    (key.len() + bytes) as u64
}

/// Refuses to let `key` count `size` bytes when that would take its tenant
/// past the quota. Growing only: a key may always shrink. The tenant's total
/// is summed here (the embedded store is for demos and small tests; Redis
/// keeps a ledger instead).
fn fits(
    map: &HashMap<String, Entry>,
    quota: &Quota,
    key: &str,
    size: u64,
) -> Result<(), StoreError> {
    let now = Instant::now();
    let held = map
        .get(key)
        .filter(|entry| entry.live(now))
        .map_or(0, |entry| entry.counted);
    if size <= held {
        return Ok(());
    }
    if usage(map, quota, now) - held + size > quota.limit_bytes {
        return Err(quota.exceeded());
    }
    Ok(())
}

/// Bytes the live keys of `quota`'s tenant count.
fn usage(map: &HashMap<String, Entry>, quota: &Quota, now: Instant) -> u64 {
    map.iter()
        .filter(|(name, entry)| name.starts_with(&quota.tenant_base) && entry.live(now))
        .map(|(_, entry)| entry.counted)
        .sum()
}

fn wrong_type() -> StoreError {
    StoreError::Invalid("the key holds another kind of value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expired_entries_nobody_reads_are_swept() {
        let store = MemoryStore::new();
        for n in 0..100 {
            store
                .set(&format!("claim:{n}"), b"x", Some(Duration::from_millis(1)))
                .await
                .unwrap();
        }
        store.set("kept", b"y", None).await.unwrap();
        tokio::time::advance(Duration::from_millis(5)).await;
        for _ in 0..SWEEP_EVERY {
            store.get("kept").await.unwrap();
        }
        let left = store.entries.lock().unwrap().len();
        assert_eq!(left, 1, "only the entry without expiry is left");
    }
}
