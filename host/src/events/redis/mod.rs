//! The event bus on Redis Streams.
//!
//! Per tenant (all keys carry the tenant's hash tag):
//! - `…:ev:topic:<topic>`: a stream per topic; one consumer group per
//!   subscribing plugin, so every subscriber gets every event (fan-out) and the
//!   host instances of one plugin share the work (each entry goes to one of them);
//! - `…:ev:direct:<plugin>`: the plugin's own stream, for retries and replays;
//! - `…:ev:retry` (sorted set, score = due time) with `…:ev:retry:<id>` records:
//!   failed events waiting for their next attempt;
//! - `…:ev:dead`: dead letters.
//!
//! An entry stays pending in its group until handled; if its instance dies it
//! is claimed by another after the visibility timeout (`XAUTOCLAIM`). Moves
//! between these structures are Lua scripts (`events/lua/`), so none loses or
//! duplicates an event. Keys are in [`keys`], field layouts in [`records`], the
//! delivery tasks in [`worker`].

mod keys;
mod records;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use redis::Script;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use tokio::sync::Semaphore;

use self::keys::Keys;
use self::records::{EventRecord, dead_letter, field_bytes, field_number};
use self::worker::{Source, SourceSubscription, Worker};
use super::{DeadLetter, SubscriptionStats, Workers};
use crate::config::EventsConfig;
use crate::metrics::Metrics;
use crate::store::redis::classify;
use crate::store::{RedisStore, StoreError};
use crate::tenants::{Registry, Tenant};

/// Entries read at once by one reader; more only when that many handlers are free.
pub(super) const READ_BATCH: usize = 64;

#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub store: RedisStore,
    pub prefix: String,
    pub consumer: String,
    pub config: EventsConfig,
    pub scripts: Scripts,
    pub workers: Workers,
    pub metrics: Metrics,
}

pub(super) struct Scripts {
    pub retry: Script,
    pub dead: Script,
    pub pump: Script,
    pub replay: Script,
}

impl RedisBus {
    pub fn new(store: RedisStore, prefix: &str, config: &EventsConfig, metrics: Metrics) -> Self {
        let consumer = config
            .consumer_name
            .clone()
            .unwrap_or_else(default_consumer_name);
        Self {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.to_owned(),
                consumer,
                config: config.clone(),
                scripts: Scripts {
                    retry: Script::new(include_str!("../lua/retry.lua")),
                    dead: Script::new(include_str!("../lua/dead.lua")),
                    pump: Script::new(include_str!("../lua/pump.lua")),
                    replay: Script::new(include_str!("../lua/replay.lua")),
                },
                workers: Workers::new(config.max_concurrent),
                metrics,
            }),
        }
    }

    pub(super) fn workers(&self) -> &Workers {
        &self.inner.workers
    }

    pub async fn emit(
        &self,
        tenant: &str,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<String, StoreError> {
        let id = crate::ids::fast_uuid().to_string();
        let command = self.xadd(tenant, topic, &id, &payload, super::now_us());
        let mut connection = self.inner.store.connection();
        let _: String = command
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(id)
    }

    /// One `XADD` per payload in a `MULTI` block: all or none, one round trip.
    /// The entries share one stream, so one slot on a cluster too.
    pub async fn emit_all(
        &self,
        tenant: &str,
        topic: &str,
        payloads: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let emitted_us = super::now_us();
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for payload in &payloads {
            let id = crate::ids::fast_uuid().to_string();
            pipeline
                .add_command(self.xadd(tenant, topic, &id, payload, emitted_us))
                .ignore();
        }
        let mut connection = self.inner.store.connection();
        let () = pipeline
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn xadd(
        &self,
        tenant: &str,
        topic: &str,
        id: &str,
        payload: &[u8],
        emitted_us: u64,
    ) -> redis::Cmd {
        let keys = Keys::new(&self.inner.prefix, tenant);
        let mut command = redis::cmd("XADD");
        command
            .arg(keys.topic(topic))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.config.max_stream_length)
            .arg("*");
        EventRecord {
            id,
            topic,
            payload,
            emitted_us,
            attempt: 1,
        }
        .write(&mut command);
        command
    }

    /// Creates the consumer groups of `tenant`'s subscriptions (each plugin's
    /// group on each topic it subscribes to, and on its own direct stream).
    /// Nothing running is touched, so a failure here leaves the tenant's
    /// current delivery as it was.
    pub async fn prepare(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let inner = &self.inner;
        let keys = Keys::new(&inner.prefix, &tenant.id);
        for subscription in &tenant.subscriptions {
            // `$`: a new subscription starts with the events emitted from now on.
            let stream = keys.topic(&subscription.topic);
            create_group(&inner.store, &stream, &subscription.plugin, "$").await?;
        }
        for plugin in subscribers(tenant) {
            create_group(&inner.store, &keys.direct(plugin), plugin, "0").await?;
        }
        Ok(())
    }

    /// Starts `tenant`'s readers, the claimer of stale events, the retry pump
    /// and the schedules (after [`RedisBus::prepare`]); the tenant's previous
    /// ones stop.
    pub fn start(&self, registry: &Arc<Registry>, tenant: &Arc<Tenant>) {
        let inner = &self.inner;
        let token = inner.workers.restart(tenant);
        let keys = Keys::new(&inner.prefix, &tenant.id);
        let mut streams = Vec::new();
        let mut semaphores = HashMap::new();
        for subscription in &tenant.subscriptions {
            // One limit per plugin and topic, even if a plugin names a topic twice.
            let handlers = semaphores
                .entry((subscription.plugin.clone(), subscription.topic.clone()))
                .or_insert_with(|| Arc::new(Semaphore::new(subscription.settings.concurrency)))
                .clone();
            streams.push(Arc::new(Source {
                stream: keys.topic(&subscription.topic),
                group: subscription.plugin.clone(),
                subscription: Some(SourceSubscription {
                    handlers,
                    metrics: inner.metrics.subscription(
                        &tenant.id,
                        &subscription.plugin,
                        &subscription.topic,
                    ),
                }),
            }));
        }
        for plugin in subscribers(tenant) {
            let stream = keys.direct(plugin);
            streams.push(Arc::new(Source {
                stream,
                group: plugin.to_owned(),
                subscription: None,
            }));
        }
        let (acks, queue) = tokio::sync::mpsc::channel(worker::ACK_BATCH * 4);
        inner
            .workers
            .tracker
            .spawn(worker::ack_loop(inner.clone(), tenant.id.clone(), queue));
        let worker = Arc::new(Worker {
            inner: inner.clone(),
            registry: registry.clone(),
            tenant: tenant.id.clone(),
            keys,
            semaphores: Arc::new(semaphores),
            token: token.clone(),
            acks,
        });
        for source in &streams {
            let worker = worker.clone();
            let source = source.clone();
            inner
                .workers
                .tracker
                .spawn(async move { worker.read_loop(source).await });
        }
        inner
            .workers
            .tracker
            .spawn(worker.clone().claim_loop(streams));
        inner.workers.tracker.spawn(worker.clone().pump_loop());
        super::schedule::spawn(
            &inner.workers.tracker,
            registry,
            tenant,
            &crate::store::Store::Redis(inner.store.clone()),
            &inner.prefix,
            &inner.config,
            inner.workers.global.clone(),
            token,
        );
    }

    pub async fn stats(&self, tenant: &Tenant) -> Result<Vec<SubscriptionStats>, StoreError> {
        let keys = Keys::new(&self.inner.prefix, &tenant.id);
        let mut connection = self.inner.store.connection();
        // Counts the scripts keep: a scrape reads two small hashes, never the
        // dead letters (with their payloads) or every waiting retry.
        let counts = |key: String| {
            let mut connection = connection.clone();
            async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<HashMap<String, i64>>(&mut connection)
                    .await
                    .map_err(classify)
            }
        };
        let retrying = counts(keys.retry_counts()).await?;
        let dead = counts(keys.dead_counts()).await?;
        let count = |counts: &HashMap<String, i64>, plugin: &str, topic: &str| {
            let n = counts
                .get(&format!("{plugin}|{topic}"))
                .copied()
                .unwrap_or(0);
            u64::try_from(n).unwrap_or(0)
        };
        let mut stats = Vec::new();
        for subscription in &tenant.subscriptions {
            let groups: Result<StreamInfoGroupsReply, _> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(keys.topic(&subscription.topic))
                .query_async(&mut connection)
                .await;
            let group = groups.ok().and_then(|reply| {
                reply
                    .groups
                    .into_iter()
                    .find(|g| g.name == subscription.plugin)
            });
            let (plugin, topic) = (&subscription.plugin, &subscription.topic);
            stats.push(SubscriptionStats {
                topic: subscription.topic.clone(),
                plugin: subscription.plugin.clone(),
                backlog: group.as_ref().and_then(|g| g.lag).unwrap_or(0) as u64,
                in_flight: group.as_ref().map(|g| g.pending).unwrap_or(0) as u64,
                retrying: count(&retrying, plugin, topic),
                dead: count(&dead, plugin, topic),
            });
        }
        Ok(stats)
    }

    pub async fn dead_letters(&self, tenant: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let keys = Keys::new(&self.inner.prefix, tenant);
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(keys.dead())
            .arg("-")
            .arg("+")
            .query_async(&mut self.inner.store.connection())
            .await
            .map_err(classify)?;
        Ok(reply.ids.iter().map(dead_letter).collect())
    }

    pub async fn replay(&self, tenant: &str, id: Option<&str>) -> Result<usize, StoreError> {
        let keys = Keys::new(&self.inner.prefix, tenant);
        let mut connection = self.inner.store.connection();
        let (start, end) = id.map(|id| (id, id)).unwrap_or(("-", "+"));
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(keys.dead())
            .arg(start)
            .arg(end)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        let mut replayed = 0;
        for entry in &reply.ids {
            let letter = dead_letter(entry);
            let payload = field_bytes(entry, "payload");
            let mut invocation = self.inner.scripts.replay.key(keys.dead());
            invocation
                .key(keys.direct(&letter.plugin))
                .key(keys.dead_counts())
                .arg(&entry.id)
                .arg(self.inner.config.max_stream_length)
                .arg(format!("{}|{}", letter.plugin, letter.topic));
            EventRecord {
                id: &letter.event_id,
                topic: &letter.topic,
                payload: &payload,
                emitted_us: field_number::<u64>(entry, "emitted_us").unwrap_or(0),
                attempt: 1,
            }
            .write(&mut invocation);
            let moved: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(classify)?;
            replayed += usize::try_from(moved).unwrap_or(0);
        }
        Ok(replayed)
    }

    pub async fn purge(&self, tenant: &str) -> Result<usize, StoreError> {
        let keys = Keys::new(&self.inner.prefix, tenant);
        let mut connection = self.inner.store.connection();
        let count: usize = redis::cmd("XLEN")
            .arg(keys.dead())
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        let _: i64 = redis::cmd("DEL")
            .arg(keys.dead())
            .arg(keys.dead_counts())
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(count)
    }
}

pub(super) async fn create_group(
    store: &RedisStore,
    stream: &str,
    group: &str,
    start: &str,
) -> Result<(), StoreError> {
    let created: Result<String, redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(&mut store.connection())
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(error) if error.to_string().contains("BUSYGROUP") => Ok(()),
        Err(error) => Err(classify(error)),
    }
}

/// The plugins of `tenant` that subscribe to any topic.
fn subscribers(tenant: &Tenant) -> BTreeSet<&str> {
    tenant
        .subscriptions
        .iter()
        .map(|s| s.plugin.as_str())
        .collect()
}

/// `<host>-<pid>-<random>`: unique per process, readable in `XINFO CONSUMERS`.
fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::worker::Taken;
    use super::*;
    use crate::events::delivery::{Delivery, Outcome};
    use crate::store::redis::RedisConnection;

    /// Emits one event to topic `t` of `firm-a` and takes it for group `p`, as
    /// an instance's reader would; returns the entry's id.
    async fn emit_and_take(
        bus: &RedisBus,
        connection: &mut RedisConnection,
        stream: &str,
    ) -> String {
        bus.emit("firm-a", "t", b"{}".to_vec()).await.unwrap();
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("p")
            .arg("instance-1")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(connection)
            .await
            .unwrap();
        reply.keys[0].ids[0].id.clone()
    }

    async fn delete_prefix(connection: &mut RedisConnection, prefix: &str) {
        let leftover: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(connection)
            .await
            .unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(leftover)
            .query_async(connection)
            .await
            .unwrap();
    }

    /// Two instances settling the same entry (the one that took it over and the
    /// one that had it first): only the first records a retry or dead letter.
    #[tokio::test]
    async fn an_outcome_is_recorded_only_by_the_instance_whose_entry_it_still_is() {
        let store = RedisStore::connect("redis://127.0.0.1:6379/0", None)
            .await
            .unwrap();
        let prefix = format!("unit-{}", uuid::Uuid::new_v4().simple());
        let bus = RedisBus::new(
            store.clone(),
            &prefix,
            &EventsConfig::default(),
            Metrics::new(),
        );
        let keys = Keys::new(&prefix, "firm-a");
        let stream = keys.topic("t");
        create_group(&store, &stream, "p", "$").await.unwrap();
        let mut connection = store.connection();
        let delivery = Delivery {
            id: "e1".into(),
            topic: "t".into(),
            payload: b"{}".to_vec(),
            attempt: 1,
            emitted_at_us: 0,
        };
        let outcomes = [
            Outcome::Retry {
                after: Duration::from_secs(60),
                error: "again".into(),
            },
            Outcome::Dead {
                error: "never".into(),
            },
        ];
        for outcome in outcomes {
            let entry_id = emit_and_take(&bus, &mut connection, &stream).await;
            let taken = Taken {
                keys: &keys,
                stream: &stream,
                group: "p",
                entry_id: &entry_id,
            };
            let first = bus.inner.settle(&taken, &delivery, outcome.clone());
            assert!(first.await.unwrap(), "{outcome:?}");
            let second = bus.inner.settle(&taken, &delivery, outcome.clone());
            assert!(!second.await.unwrap(), "{outcome:?}");
        }
        let retries: usize = redis::cmd("ZCARD")
            .arg(keys.retry_set())
            .query_async(&mut connection)
            .await
            .unwrap();
        let dead: usize = redis::cmd("XLEN")
            .arg(keys.dead())
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!((retries, dead), (1, 1));
        delete_prefix(&mut connection, &prefix).await;
    }

    /// The dead letters kept past the maximum are dropped oldest first, and the
    /// counts the figures read stay equal to what is kept.
    #[tokio::test]
    async fn dead_letter_counts_stay_exact_when_the_oldest_are_dropped() {
        let store = RedisStore::connect("redis://127.0.0.1:6379/0", None)
            .await
            .unwrap();
        let prefix = format!("unit-{}", uuid::Uuid::new_v4().simple());
        let config = EventsConfig {
            max_dead_letters: 2,
            ..EventsConfig::default()
        };
        let bus = RedisBus::new(store.clone(), &prefix, &config, Metrics::new());
        let keys = Keys::new(&prefix, "firm-a");
        let stream = keys.topic("t");
        create_group(&store, &stream, "p", "$").await.unwrap();
        let mut connection = store.connection();
        for n in 0..5 {
            let entry_id = emit_and_take(&bus, &mut connection, &stream).await;
            let delivery = Delivery {
                id: format!("e{n}"),
                topic: "t".into(),
                payload: Vec::new(),
                attempt: 1,
                emitted_at_us: 0,
            };
            let taken = Taken {
                keys: &keys,
                stream: &stream,
                group: "p",
                entry_id: &entry_id,
            };
            let outcome = Outcome::Dead { error: "no".into() };
            assert!(bus.inner.settle(&taken, &delivery, outcome).await.unwrap());
        }
        let kept: usize = redis::cmd("XLEN")
            .arg(keys.dead())
            .query_async(&mut connection)
            .await
            .unwrap();
        let counted: i64 = redis::cmd("HGET")
            .arg(keys.dead_counts())
            .arg("p|t")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!((kept, counted), (2, 2));
        let letters = bus.dead_letters("firm-a").await.unwrap();
        let ids: Vec<&str> = letters.iter().map(|l| l.event_id.as_str()).collect();
        assert_eq!(ids, ["e3", "e4"], "the newest are kept");
        delete_prefix(&mut connection, &prefix).await;
    }
}
