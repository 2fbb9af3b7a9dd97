//! Events between the plugins of one tenant, and schedules.
//!
//! A plugin emits to a topic; every plugin of the same tenant that subscribes
//! to it gets the event (fan-out), never another tenant's plugins. Delivery is
//! at least once, with retries (exponential backoff with jitter) and dead
//! letters; see `docs/events.md` for the guarantees.
//!
//! Two backends behind [`EventBus`]: [`redis`] on Redis Streams, shared by any
//! number of host instances and surviving crashes, and [`memory`] for the
//! embedded store, with the same semantics inside one process.

mod delivery;
mod memory;
mod redis;
pub mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use delivery::{Outcome, backoff};
pub use memory::MemoryBus;
pub use redis::RedisBus;

use crate::store::StoreError;
use crate::tenants::{Registry, Tenant};

/// Where plugins emit to and where operators look. Cheap to clone.
#[derive(Clone)]
pub enum EventBus {
    Memory(MemoryBus),
    Redis(RedisBus),
}

/// Delivery figures of one subscription (a plugin's interest in a topic).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SubscriptionStats {
    pub topic: String,
    pub plugin: String,
    /// Emitted but not yet taken by any instance.
    pub backlog: u64,
    /// Taken and not yet done (being handled, or held by an instance that died).
    pub in_flight: u64,
    /// Failed and waiting for their next attempt.
    pub retrying: u64,
    /// Given up on: in the dead letters.
    pub dead: u64,
}

/// An event as it was emitted, for [`EventBus::watch`].
#[derive(Debug, Clone, Serialize)]
pub struct Emitted {
    pub tenant: String,
    pub topic: String,
    /// The event's id; none for events emitted together (`emit-all` on Redis).
    pub id: Option<String>,
    pub payload: Vec<u8>,
}

/// An event that will not be delivered again unless replayed.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Id of the dead letter (not of the event), for replay.
    pub id: String,
    pub event_id: String,
    pub plugin: String,
    pub topic: String,
    pub attempts: u32,
    pub error: String,
    pub emitted_at: u64,
    pub failed_at: u64,
    /// The payload as text when it is UTF-8, else empty (`payload_bytes` gives its size).
    pub payload: String,
    pub payload_bytes: usize,
}

impl EventBus {
    /// Queues an event for `tenant`'s subscribers of `topic`; returns its id.
    /// A topic no plugin of the tenant subscribes to is refused: its events
    /// would only pile up in a stream nobody reads.
    pub async fn emit(
        &self,
        tenant: &str,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<String, StoreError> {
        if !self.workers().subscribed(tenant, topic) {
            return Err(StoreError::Invalid(format!(
                "no plugin of this tenant subscribes to topic `{topic}`"
            )));
        }
        let tapped = self.workers().tapped().then(|| payload.clone());
        let id = match self {
            EventBus::Memory(bus) => bus.emit(tenant, topic, payload).await,
            EventBus::Redis(bus) => bus.emit(tenant, topic, payload).await,
        }?;
        if let Some(payload) = tapped {
            self.workers().tap(tenant, topic, Some(id.clone()), payload);
        }
        Ok(id)
    }

    /// Every event emitted through this bus from now on, as it is queued: for
    /// the plugin test harness and `bitbylaw dev`. Costs nothing while no one
    /// watches; a watcher that falls more than 1,024 events behind misses some
    /// (`RecvError::Lagged`) rather than slowing emitters down.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<Emitted> {
        self.workers().tap.subscribe()
    }

    /// Queues one event per payload for `topic`, all or none.
    pub async fn emit_all(
        &self,
        tenant: &str,
        topic: &str,
        payloads: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        if !self.workers().subscribed(tenant, topic) {
            return Err(StoreError::Invalid(format!(
                "no plugin of this tenant subscribes to topic `{topic}`"
            )));
        }
        let tapped = self.workers().tapped().then(|| payloads.clone());
        match self {
            EventBus::Memory(bus) => {
                for payload in payloads {
                    bus.emit(tenant, topic, payload).await?;
                }
            }
            EventBus::Redis(bus) => bus.emit_all(tenant, topic, payloads).await?,
        }
        for payload in tapped.into_iter().flatten() {
            self.workers().tap(tenant, topic, None, payload);
        }
        Ok(())
    }

    /// Readies what `tenant`'s delivery needs in the store (consumer groups),
    /// leaving what runs untouched: a reload calls it before the swap, so a
    /// store error keeps the running version and its delivery as they are.
    pub async fn prepare(&self, tenant: &Tenant) -> Result<(), StoreError> {
        match self {
            EventBus::Memory(_) => Ok(()),
            EventBus::Redis(bus) => bus.prepare(tenant).await,
        }
    }

    /// Starts (or restarts, after a reload) delivery and schedules for
    /// `tenant`, once [`EventBus::prepare`] succeeded.
    pub fn start(&self, registry: &Arc<Registry>, tenant: &Arc<Tenant>) {
        match self {
            EventBus::Memory(bus) => bus.start(registry, tenant),
            EventBus::Redis(bus) => bus.start(registry, tenant),
        }
    }

    /// Readies and starts delivery for `tenant`.
    pub async fn run_tenant(
        &self,
        registry: &Arc<Registry>,
        tenant: &Arc<Tenant>,
    ) -> Result<(), StoreError> {
        self.prepare(tenant).await?;
        self.start(registry, tenant);
        Ok(())
    }

    /// Stops delivery and schedules of a tenant that was taken out.
    pub fn stop_tenant(&self, tenant: &str) {
        self.workers().stop(tenant);
    }

    fn workers(&self) -> &Workers {
        match self {
            EventBus::Memory(bus) => bus.workers(),
            EventBus::Redis(bus) => bus.workers(),
        }
    }

    /// Stops taking events and schedule ticks, lets running handlers finish for
    /// up to `grace`, and leaves the rest for other instances.
    pub async fn shutdown(&self, grace: Duration) {
        let workers = self.workers();
        workers.shutdown.cancel();
        workers.tracker.close();
        if tokio::time::timeout(grace, workers.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "event handlers still running after the grace period; their events go to other instances"
            );
        }
    }

    pub async fn stats(&self, tenant: &Tenant) -> Result<Vec<SubscriptionStats>, StoreError> {
        match self {
            EventBus::Memory(bus) => Ok(bus.stats(tenant)),
            EventBus::Redis(bus) => bus.stats(tenant).await,
        }
    }

    pub async fn dead_letters(&self, tenant: &str) -> Result<Vec<DeadLetter>, StoreError> {
        match self {
            EventBus::Memory(bus) => Ok(bus.dead_letters(tenant)),
            EventBus::Redis(bus) => bus.dead_letters(tenant).await,
        }
    }

    /// Delivers dead letters again (all, or the one with `id`) as first attempts; returns how many.
    pub async fn replay(&self, tenant: &str, id: Option<&str>) -> Result<usize, StoreError> {
        match self {
            EventBus::Memory(bus) => Ok(bus.replay(tenant, id)),
            EventBus::Redis(bus) => bus.replay(tenant, id).await,
        }
    }

    /// Drops all of a tenant's dead letters; returns how many.
    pub async fn purge(&self, tenant: &str) -> Result<usize, StoreError> {
        match self {
            EventBus::Memory(bus) => Ok(bus.purge(tenant)),
            EventBus::Redis(bus) => bus.purge(tenant).await,
        }
    }
}

impl crate::capabilities::Emitter for EventBus {
    fn emit<'a>(
        &'a self,
        tenant: &'a str,
        topic: &'a str,
        payload: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, StoreError>> + Send + 'a>>
    {
        Box::pin(EventBus::emit(self, tenant, topic, payload))
    }

    fn emit_all<'a>(
        &'a self,
        tenant: &'a str,
        topic: &'a str,
        payloads: Vec<Vec<u8>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>
    {
        Box::pin(EventBus::emit_all(self, tenant, topic, payloads))
    }
}

/// The tasks of a bus: one cancellation token per tenant (so a reload restarts
/// just that tenant), one tracker to wait for at shutdown, and the instance-wide
/// cap on event and schedule calls.
pub(crate) struct Workers {
    pub global: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    tenants: Mutex<HashMap<String, Running>>,
    tap: tokio::sync::broadcast::Sender<Emitted>,
}

/// A running tenant: its tasks' token and the topics its plugins subscribe to.
type Running = (CancellationToken, Arc<HashSet<String>>);

impl Workers {
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(max_concurrent)),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            tenants: Mutex::new(HashMap::new()),
            tap: tokio::sync::broadcast::channel(1024).0,
        }
    }

    fn tapped(&self) -> bool {
        self.tap.receiver_count() > 0
    }

    fn tap(&self, tenant: &str, topic: &str, id: Option<String>, payload: Vec<u8>) {
        let _ = self.tap.send(Emitted {
            tenant: tenant.to_owned(),
            topic: topic.to_owned(),
            id,
            payload,
        });
    }

    /// Stops `tenant`'s tasks.
    pub fn stop(&self, tenant: &str) {
        let running = bitbylaw_core::sync::lock(&self.tenants).remove(tenant);
        if let Some((token, _)) = running {
            token.cancel();
        }
    }

    /// A fresh token for `tenant`'s tasks, whose plugins subscribe to `topics`;
    /// the previous tasks of the tenant stop.
    pub fn restart(&self, tenant: &Tenant) -> CancellationToken {
        let token = self.shutdown.child_token();
        let topics = tenant
            .subscriptions
            .iter()
            .map(|s| s.topic.clone())
            .collect();
        let previous = bitbylaw_core::sync::lock(&self.tenants)
            .insert(tenant.id.clone(), (token.clone(), Arc::new(topics)));
        if let Some((previous, _)) = previous {
            previous.cancel();
        }
        token
    }

    /// Whether a plugin of running tenant `tenant` subscribes to `topic`.
    pub fn subscribed(&self, tenant: &str, topic: &str) -> bool {
        bitbylaw_core::sync::lock(&self.tenants)
            .get(tenant)
            .is_some_and(|(_, topics)| topics.contains(topic))
    }
}

pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch: event timestamps, fine enough for latency figures.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A payload for display: text when it is UTF-8.
pub(crate) fn payload_text(payload: &[u8]) -> String {
    String::from_utf8(payload.to_vec()).unwrap_or_default()
}
