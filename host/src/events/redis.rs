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
//! between these structures are Lua scripts (`lua/`), so none loses or
//! duplicates an event.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamRangeReply, StreamReadReply,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::delivery::{self, Delivery, Outcome};
use super::{DeadLetter, SubscriptionStats, Workers, now_ms, payload_text};
use crate::config::EventsConfig;
use crate::metrics::Metrics;
use crate::runtime::{Registry, Tenant};
use crate::store::redis::classify;
use crate::store::{RedisStore, StoreError};

/// Entries read at once by one reader; more only when that many handlers are free.
const READ_BATCH: usize = 16;

#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    store: RedisStore,
    prefix: String,
    consumer: String,
    config: EventsConfig,
    scripts: Scripts,
    workers: Workers,
    metrics: Metrics,
}

struct Scripts {
    retry: Script,
    dead: Script,
    pump: Script,
    replay: Script,
}

/// Key names of one tenant's event structures.
#[derive(Clone)]
struct Keys {
    base: String,
}

impl Keys {
    fn new(prefix: &str, tenant: &str) -> Self {
        Self {
            base: format!("{prefix}:{{{tenant}}}:ev:"),
        }
    }
    fn topic(&self, topic: &str) -> String {
        format!("{}topic:{topic}", self.base)
    }
    fn direct(&self, plugin: &str) -> String {
        format!("{}direct:{plugin}", self.base)
    }
    fn retry_set(&self) -> String {
        format!("{}retry", self.base)
    }
    fn retry_record(&self, id: &str) -> String {
        format!("{}retry:{id}", self.base)
    }
    fn dead(&self) -> String {
        format!("{}dead", self.base)
    }
}

/// A retry waiting in the sorted set: `<plugin>|<record id>|<topic>`, so stats
/// can count by plugin and topic without reading the records.
struct RetryMember<'a> {
    plugin: &'a str,
    record: &'a str,
    topic: &'a str,
}

impl<'a> RetryMember<'a> {
    fn parse(member: &'a str) -> Option<Self> {
        let mut parts = member.splitn(3, '|');
        Some(Self {
            plugin: parts.next()?,
            record: parts.next()?,
            topic: parts.next()?,
        })
    }
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
                    retry: Script::new(include_str!("lua/retry.lua")),
                    dead: Script::new(include_str!("lua/dead.lua")),
                    pump: Script::new(include_str!("lua/pump.lua")),
                    replay: Script::new(include_str!("lua/replay.lua")),
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
        let id = uuid::Uuid::new_v4().to_string();
        let keys = Keys::new(&self.inner.prefix, tenant);
        let mut connection = self.inner.store.connection();
        let _: String = redis::cmd("XADD")
            .arg(keys.topic(topic))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.config.max_stream_length)
            .arg("*")
            .arg("id")
            .arg(&id)
            .arg("topic")
            .arg(topic)
            .arg("payload")
            .arg(payload)
            .arg("emitted_us")
            .arg(super::now_us())
            .arg("attempt")
            .arg(1)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(id)
    }

    /// Creates the consumer groups of `tenant`'s subscriptions and starts its
    /// readers, the claimer of stale events, the retry pump and the schedules.
    /// A second call (after a reload) stops the previous ones first.
    pub async fn run_tenant(
        &self,
        registry: &Arc<Registry>,
        tenant: &Arc<Tenant>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let token = inner.workers.restart(&tenant.id);
        let keys = Keys::new(&inner.prefix, &tenant.id);
        let mut streams = Vec::new();
        let mut semaphores = HashMap::new();
        for subscription in &tenant.subscriptions {
            let stream = keys.topic(&subscription.topic);
            // `$`: a new subscription starts with the events emitted from now on.
            create_group(&inner.store, &stream, &subscription.plugin, "$").await?;
            streams.push((stream, subscription.plugin.clone()));
            semaphores.insert(
                (subscription.plugin.clone(), subscription.topic.clone()),
                Arc::new(Semaphore::new(subscription.settings.concurrency)),
            );
        }
        let plugins: BTreeSet<&str> = tenant
            .subscriptions
            .iter()
            .map(|s| s.plugin.as_str())
            .collect();
        for plugin in plugins {
            let stream = keys.direct(plugin);
            create_group(&inner.store, &stream, plugin, "0").await?;
            streams.push((stream, plugin.to_owned()));
        }
        let worker = Worker {
            inner: inner.clone(),
            registry: registry.clone(),
            tenant: tenant.id.clone(),
            keys,
            semaphores: Arc::new(semaphores),
            token: token.clone(),
        };
        for (stream, group) in &streams {
            let worker = worker.clone();
            let (stream, group) = (stream.clone(), group.clone());
            inner
                .workers
                .tracker
                .spawn(async move { worker.read_loop(stream, group).await });
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
        Ok(())
    }

    pub async fn stats(&self, tenant: &Tenant) -> Result<Vec<SubscriptionStats>, StoreError> {
        let keys = Keys::new(&self.inner.prefix, &tenant.id);
        let mut connection = self.inner.store.connection();
        let mut retrying: HashMap<(String, String), u64> = HashMap::new();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.retry_set())
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        for member in &members {
            if let Some(parsed) = RetryMember::parse(member) {
                *retrying
                    .entry((parsed.plugin.to_owned(), parsed.topic.to_owned()))
                    .or_default() += 1;
            }
        }
        let mut dead: HashMap<(String, String), u64> = HashMap::new();
        for letter in self.dead_letters(&tenant.id).await? {
            *dead.entry((letter.plugin, letter.topic)).or_default() += 1;
        }
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
            let key = (subscription.plugin.clone(), subscription.topic.clone());
            stats.push(SubscriptionStats {
                topic: subscription.topic.clone(),
                plugin: subscription.plugin.clone(),
                backlog: group.as_ref().and_then(|g| g.lag).unwrap_or(0) as u64,
                in_flight: group.as_ref().map(|g| g.pending).unwrap_or(0) as u64,
                retrying: retrying.get(&key).copied().unwrap_or(0),
                dead: dead.get(&key).copied().unwrap_or(0),
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
            let moved: i64 = self
                .inner
                .scripts
                .replay
                .key(keys.dead())
                .key(keys.direct(&letter.plugin))
                .arg(&entry.id)
                .arg("id")
                .arg(&letter.event_id)
                .arg("topic")
                .arg(&letter.topic)
                .arg("payload")
                .arg(payload)
                .arg("emitted_us")
                .arg(field_number::<u64>(entry, "emitted_us").unwrap_or(0))
                .arg("attempt")
                .arg(1)
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
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(count)
    }
}

/// The tasks of one tenant share this.
#[derive(Clone)]
struct Worker {
    inner: Arc<Inner>,
    registry: Arc<Registry>,
    tenant: String,
    keys: Keys,
    semaphores: Arc<HashMap<(String, String), Arc<Semaphore>>>,
    token: CancellationToken,
}

impl Worker {
    /// Reads new entries of one stream for one group, as many as handlers are free.
    async fn read_loop(self, stream: String, group: String) {
        let block = Duration::from_millis(self.inner.config.read_block_ms);
        let Some(mut connection) = self.connect(block).await else {
            return;
        };
        while !self.token.is_cancelled() {
            let mut permits = tokio::select! {
                () = self.token.cancelled() => return,
                permit = self.inner.workers.global.clone().acquire_owned() => match permit {
                    Ok(permit) => vec![permit],
                    Err(_) => return,
                },
            };
            while permits.len() < READ_BATCH {
                match self.inner.workers.global.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            // Not raced against cancellation: once Redis handed entries to this
            // consumer they are ours to finish (within the shutdown grace).
            let reply: Result<Option<StreamReadReply>, _> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&self.inner.consumer)
                .arg("COUNT")
                .arg(permits.len())
                .arg("BLOCK")
                .arg(self.inner.config.read_block_ms)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut connection)
                .await;
            let entries: Vec<StreamId> = match reply {
                Ok(reply) => reply
                    .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                    .unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, %stream, %error, "reading events failed; retrying");
                    drop(permits);
                    self.pause(Duration::from_secs(1)).await;
                    if let Some(fresh) = self.connect(block).await {
                        connection = fresh;
                    }
                    continue;
                }
            };
            for entry in entries {
                let Some(permit) = permits.pop() else { break };
                self.dispatch(&stream, &group, entry, permit).await;
            }
        }
    }

    /// Takes over entries that another (dead) instance took and never finished.
    async fn claim_loop(self, streams: Vec<(String, String)>) {
        let visibility = self.inner.config.visibility_timeout_ms;
        let every = Duration::from_millis((visibility / 4).max(250));
        loop {
            if self.pause(every).await {
                return;
            }
            for (stream, group) in &streams {
                let mut cursor = "0-0".to_owned();
                loop {
                    let reply: Result<StreamAutoClaimReply, _> = redis::cmd("XAUTOCLAIM")
                        .arg(stream)
                        .arg(group)
                        .arg(&self.inner.consumer)
                        .arg(visibility)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(READ_BATCH)
                        .query_async(&mut self.inner.store.connection())
                        .await;
                    let reply = match reply {
                        Ok(reply) => reply,
                        Err(error) => {
                            tracing::warn!(tenant = %self.tenant, %stream, %error, "claiming stale events failed");
                            break;
                        }
                    };
                    for entry in reply.claimed {
                        tracing::info!(tenant = %self.tenant, %stream, entry = %entry.id, "taking over an event another instance did not finish");
                        let permit = tokio::select! {
                            () = self.token.cancelled() => return,
                            permit = self.inner.workers.global.clone().acquire_owned() => match permit {
                                Ok(permit) => permit,
                                Err(_) => return,
                            },
                        };
                        self.dispatch(stream, group, entry, permit).await;
                    }
                    if reply.next_stream_id == "0-0" || self.token.is_cancelled() {
                        break;
                    }
                    cursor = reply.next_stream_id;
                }
            }
        }
    }

    /// Moves retries that are due into their plugin's stream.
    async fn pump_loop(self) {
        let every = Duration::from_millis(self.inner.config.retry_poll_ms);
        let retry_set = self.keys.retry_set();
        loop {
            if self.pause(every).await {
                return;
            }
            let due: Result<Vec<String>, _> = redis::cmd("ZRANGEBYSCORE")
                .arg(&retry_set)
                .arg("-inf")
                .arg(now_ms())
                .arg("LIMIT")
                .arg(0)
                .arg(100)
                .query_async(&mut self.inner.store.connection())
                .await;
            let due = match due {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, %error, "reading due retries failed");
                    continue;
                }
            };
            for member in &due {
                let Some(parsed) = RetryMember::parse(member) else {
                    continue;
                };
                let moved: Result<i64, _> = self
                    .inner
                    .scripts
                    .pump
                    .key(&retry_set)
                    .key(self.keys.retry_record(parsed.record))
                    .key(self.keys.direct(parsed.plugin))
                    .arg(member)
                    .invoke_async(&mut self.inner.store.connection())
                    .await;
                if let Err(error) = moved {
                    tracing::warn!(tenant = %self.tenant, %error, "moving a due retry failed");
                }
            }
        }
    }

    /// Waits for the subscription's capacity, then handles the entry in its own task.
    async fn dispatch(
        &self,
        stream: &str,
        group: &str,
        entry: StreamId,
        global: OwnedSemaphorePermit,
    ) {
        let Some(delivery) = parse_delivery(&entry) else {
            tracing::error!(tenant = %self.tenant, %stream, entry = %entry.id, "malformed event entry; dropped");
            let _: Result<i64, _> = redis::cmd("XACK")
                .arg(stream)
                .arg(group)
                .arg(&entry.id)
                .query_async(&mut self.inner.store.connection())
                .await;
            return;
        };
        let local = match self
            .semaphores
            .get(&(group.to_owned(), delivery.topic.clone()))
        {
            Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
            None => None,
        };
        let worker = self.clone();
        let (stream, group) = (stream.to_owned(), group.to_owned());
        self.inner.workers.tracker.spawn(async move {
            let _permits = (global, local);
            worker.handle(&stream, &group, &entry.id, delivery).await;
        });
    }

    async fn handle(&self, stream: &str, group: &str, entry_id: &str, delivery: Delivery) {
        let deployment = self.registry.current();
        let Some(tenant) = deployment.tenant(&self.tenant) else {
            return;
        };
        let Some(plugin) = tenant.plugins.get(group).cloned() else {
            // Plugin removed from the tenant: leave the entry pending; nothing handles it.
            return;
        };
        let settings = tenant.subscription_settings(group, &delivery.topic);
        let outcome = delivery::deliver(&plugin, &delivery, &settings).await;
        self.inner.metrics.event_handled(
            &self.tenant,
            group,
            &delivery.topic,
            outcome_label(&outcome),
            delivery.emitted_at_us,
        );
        let mut connection = self.inner.store.connection();
        let result: Result<(), redis::RedisError> = match outcome {
            Outcome::Done => redis::cmd("XACK")
                .arg(stream)
                .arg(group)
                .arg(entry_id)
                .query_async::<i64>(&mut connection)
                .await
                .map(drop),
            Outcome::Retry { after, error: _ } => {
                let record = uuid::Uuid::new_v4().simple().to_string();
                let member = format!("{group}|{record}|{}", delivery.topic);
                let due =
                    now_ms().saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                self.inner
                    .scripts
                    .retry
                    .key(stream)
                    .key(self.keys.retry_set())
                    .key(self.keys.retry_record(&record))
                    .arg(group)
                    .arg(entry_id)
                    .arg(due)
                    .arg(member)
                    .arg("id")
                    .arg(&delivery.id)
                    .arg("topic")
                    .arg(&delivery.topic)
                    .arg("payload")
                    .arg(&delivery.payload)
                    .arg("emitted_us")
                    .arg(delivery.emitted_at_us)
                    .arg("attempt")
                    .arg(delivery.attempt + 1)
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map(drop)
            }
            Outcome::Dead { error } => self
                .inner
                .scripts
                .dead
                .key(stream)
                .key(self.keys.dead())
                .arg(group)
                .arg(entry_id)
                .arg(self.inner.config.max_dead_letters)
                .arg("id")
                .arg(&delivery.id)
                .arg("plugin")
                .arg(group)
                .arg("topic")
                .arg(&delivery.topic)
                .arg("payload")
                .arg(&delivery.payload)
                .arg("emitted_us")
                .arg(delivery.emitted_at_us)
                .arg("attempts")
                .arg(delivery.attempt)
                .arg("error")
                .arg(error)
                .arg("failed_at")
                .arg(now_ms())
                .invoke_async::<String>(&mut connection)
                .await
                .map(drop),
        };
        if let Err(error) = result {
            // The entry stays pending and is claimed again after the visibility timeout.
            tracing::warn!(tenant = %self.tenant, %stream, entry = %entry_id, %error, "recording the outcome of an event failed");
        }
    }

    async fn connect(&self, block: Duration) -> Option<MultiplexedConnection> {
        loop {
            match self
                .inner
                .store
                .dedicated_connection(block + Duration::from_secs(5))
                .await
            {
                Ok(connection) => return Some(connection),
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, %error, "cannot connect the event reader; retrying");
                    if self.pause(Duration::from_secs(1)).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Sleeps; true when cancelled meanwhile.
    async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            () = self.token.cancelled() => true,
            () = tokio::time::sleep(duration) => false,
        }
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead",
    }
}

async fn create_group(
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

fn field_bytes(entry: &StreamId, name: &str) -> Vec<u8> {
    entry
        .map
        .get(name)
        .and_then(|value| redis::from_redis_value_ref::<Vec<u8>>(value).ok())
        .unwrap_or_default()
}

fn field_string(entry: &StreamId, name: &str) -> Option<String> {
    entry
        .map
        .get(name)
        .and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
}

fn field_number<T: std::str::FromStr>(entry: &StreamId, name: &str) -> Option<T> {
    field_string(entry, name)?.parse().ok()
}

fn parse_delivery(entry: &StreamId) -> Option<Delivery> {
    Some(Delivery {
        id: field_string(entry, "id")?,
        topic: field_string(entry, "topic")?,
        payload: field_bytes(entry, "payload"),
        attempt: field_number(entry, "attempt").unwrap_or(1),
        emitted_at_us: field_number(entry, "emitted_us").unwrap_or(0),
    })
}

fn dead_letter(entry: &StreamId) -> DeadLetter {
    let payload = field_bytes(entry, "payload");
    DeadLetter {
        id: entry.id.clone(),
        event_id: field_string(entry, "id").unwrap_or_default(),
        plugin: field_string(entry, "plugin").unwrap_or_default(),
        topic: field_string(entry, "topic").unwrap_or_default(),
        attempts: field_number(entry, "attempts").unwrap_or(0),
        error: field_string(entry, "error").unwrap_or_default(),
        emitted_at: field_number::<u64>(entry, "emitted_us").unwrap_or(0) / 1000,
        failed_at: field_number(entry, "failed_at").unwrap_or(0),
        payload: payload_text(&payload),
        payload_bytes: payload.len(),
    }
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
