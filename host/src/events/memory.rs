//! The event bus inside one process, for the embedded store: the same fan-out,
//! retries, dead letters, concurrency limits and schedules as on Redis, but
//! nothing survives a restart and nothing is shared with other instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::delivery::{self, Delivery, Outcome};
use super::{DeadLetter, SubscriptionStats, Workers, now_ms, payload_text};
use crate::config::EventsConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::tenants::{Registry, Tenant};
use bitbylaw_core::sync::lock;

#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

type SubscriptionKey = (String, String, String); // tenant, plugin, topic
type StoredLetter = (DeadLetter, Vec<u8>);

struct Inner {
    store: Store,
    prefix: String,
    config: EventsConfig,
    metrics: Metrics,
    registry: Mutex<Weak<Registry>>,
    workers: Workers,
    /// One queue per (tenant, plugin); kept across reloads so no queued event is lost.
    queues: Mutex<HashMap<(String, String), Queue>>,
    counts: Mutex<HashMap<SubscriptionKey, Counts>>,
    /// Per tenant: each dead letter with its payload.
    dead: Mutex<HashMap<String, Vec<StoredLetter>>>,
}

#[derive(Clone)]
struct Queue {
    sender: mpsc::UnboundedSender<Delivery>,
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Delivery>>>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    backlog: u64,
    in_flight: u64,
    retrying: u64,
}

impl MemoryBus {
    pub fn new(store: Store, prefix: &str, config: &EventsConfig, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.to_owned(),
                config: config.clone(),
                metrics,
                registry: Mutex::new(Weak::new()),
                workers: Workers::new(config.max_concurrent),
                queues: Mutex::new(HashMap::new()),
                counts: Mutex::new(HashMap::new()),
                dead: Mutex::new(HashMap::new()),
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
        let Some(registry) = lock(&self.inner.registry).upgrade() else {
            return Err(StoreError::Unavailable(
                "the event bus has not started".into(),
            ));
        };
        let deployment = registry.current();
        let Some(tenant) = deployment.tenant(tenant) else {
            return Ok(id);
        };
        let emitted_at_us = super::now_us();
        for subscription in tenant.subscriptions.iter().filter(|s| s.topic == topic) {
            let delivery = Delivery {
                id: id.clone(),
                topic: topic.to_owned(),
                payload: payload.clone(),
                attempt: 1,
                emitted_at_us,
            };
            self.inner
                .enqueue(&tenant.id, &subscription.plugin, delivery);
        }
        Ok(id)
    }

    /// Starts delivery and schedules of `tenant`; its previous ones stop.
    pub fn start(&self, registry: &Arc<Registry>, tenant: &Arc<Tenant>) {
        let inner = &self.inner;
        *lock(&inner.registry) = Arc::downgrade(registry);
        let token = inner.workers.restart(tenant);
        let mut semaphores = HashMap::new();
        for subscription in &tenant.subscriptions {
            semaphores.insert(
                subscription.topic.clone(),
                Arc::new(Semaphore::new(subscription.settings.concurrency)),
            );
        }
        let plugins: std::collections::BTreeSet<&str> = tenant
            .subscriptions
            .iter()
            .map(|s| s.plugin.as_str())
            .collect();
        for plugin in plugins {
            let queue = inner.queue(&tenant.id, plugin);
            let worker = Worker {
                inner: inner.clone(),
                registry: registry.clone(),
                tenant: tenant.id.clone(),
                plugin: plugin.to_owned(),
                semaphores: Arc::new(
                    tenant
                        .subscriptions
                        .iter()
                        .filter(|s| s.plugin == plugin)
                        .filter_map(|s| Some((s.topic.clone(), semaphores.get(&s.topic)?.clone())))
                        .collect(),
                ),
                token: token.clone(),
            };
            inner.workers.tracker.spawn(worker.consume(queue));
        }
        super::schedule::spawn(
            &inner.workers.tracker,
            registry,
            tenant,
            &inner.store,
            &inner.prefix,
            &inner.config,
            inner.workers.global.clone(),
            token,
        );
    }

    pub fn stats(&self, tenant: &Tenant) -> Vec<SubscriptionStats> {
        let counts = lock(&self.inner.counts);
        let dead = lock(&self.inner.dead);
        tenant
            .subscriptions
            .iter()
            .map(|s| {
                let c = counts
                    .get(&(tenant.id.clone(), s.plugin.clone(), s.topic.clone()))
                    .copied()
                    .unwrap_or_default();
                let dead = dead
                    .get(&tenant.id)
                    .map(|letters| {
                        letters
                            .iter()
                            .filter(|(l, _)| l.plugin == s.plugin && l.topic == s.topic)
                            .count() as u64
                    })
                    .unwrap_or(0);
                SubscriptionStats {
                    topic: s.topic.clone(),
                    plugin: s.plugin.clone(),
                    backlog: c.backlog,
                    in_flight: c.in_flight,
                    retrying: c.retrying,
                    dead,
                }
            })
            .collect()
    }

    pub fn dead_letters(&self, tenant: &str) -> Vec<DeadLetter> {
        lock(&self.inner.dead)
            .get(tenant)
            .map(|letters| letters.iter().map(|(l, _)| l.clone()).collect())
            .unwrap_or_default()
    }

    pub fn replay(&self, tenant: &str, id: Option<&str>) -> usize {
        let taken: Vec<StoredLetter> = {
            let mut dead = lock(&self.inner.dead);
            let Some(letters) = dead.get_mut(tenant) else {
                return 0;
            };
            let (taken, kept) = letters
                .drain(..)
                .partition(|(letter, _)| id.is_none_or(|id| letter.id == id));
            *letters = kept;
            taken
        };
        for (letter, payload) in &taken {
            let delivery = Delivery {
                id: letter.event_id.clone(),
                topic: letter.topic.clone(),
                payload: payload.clone(),
                attempt: 1,
                emitted_at_us: letter.emitted_at.saturating_mul(1000),
            };
            self.inner.enqueue(tenant, &letter.plugin, delivery);
        }
        taken.len()
    }

    pub fn purge(&self, tenant: &str) -> usize {
        lock(&self.inner.dead)
            .remove(tenant)
            .map(|l| l.len())
            .unwrap_or(0)
    }
}

impl Inner {
    fn queue(&self, tenant: &str, plugin: &str) -> Queue {
        lock(&self.queues)
            .entry((tenant.to_owned(), plugin.to_owned()))
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                Queue {
                    sender,
                    receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
                }
            })
            .clone()
    }

    fn enqueue(&self, tenant: &str, plugin: &str, delivery: Delivery) {
        self.count(tenant, plugin, &delivery.topic, |c| c.backlog += 1);
        // The receiver lives as long as the queue map entry: sending cannot fail.
        let _ = self.queue(tenant, plugin).sender.send(delivery);
    }

    fn count(&self, tenant: &str, plugin: &str, topic: &str, change: impl FnOnce(&mut Counts)) {
        let mut counts = lock(&self.counts);
        change(
            counts
                .entry((tenant.to_owned(), plugin.to_owned(), topic.to_owned()))
                .or_default(),
        );
    }
}

#[derive(Clone)]
struct Worker {
    inner: Arc<Inner>,
    registry: Arc<Registry>,
    tenant: String,
    plugin: String,
    semaphores: Arc<HashMap<String, Arc<Semaphore>>>,
    token: CancellationToken,
}

impl Worker {
    async fn consume(self, queue: Queue) {
        // Whoever holds the receiver consumes; after a reload the new worker takes it over.
        let mut receiver = tokio::select! {
            () = self.token.cancelled() => return,
            receiver = queue.receiver.lock_owned() => receiver,
        };
        loop {
            let global = tokio::select! {
                () = self.token.cancelled() => return,
                permit = self.inner.workers.global.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let delivery = tokio::select! {
                () = self.token.cancelled() => return,
                delivery = receiver.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            let local = match self.semaphores.get(&delivery.topic) {
                Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
                None => None,
            };
            let worker = self.clone();
            self.inner.workers.tracker.spawn(async move {
                let _permits = (global, local);
                worker.handle(delivery).await;
            });
        }
    }

    async fn handle(&self, delivery: Delivery) {
        let (tenant, plugin, topic) = (&self.tenant, &self.plugin, delivery.topic.clone());
        self.inner.count(tenant, plugin, &topic, |c| {
            c.backlog = c.backlog.saturating_sub(1);
            c.in_flight += 1;
        });
        let deployment = self.registry.current();
        let found = deployment.tenant(tenant).and_then(|t| {
            Some((
                t.plugins.get(plugin)?.clone(),
                t.subscription_settings(plugin, &topic),
            ))
        });
        let outcome = match found {
            Some((loaded, settings)) => delivery::deliver(&loaded, &delivery, &settings).await,
            None => Outcome::Dead {
                error: "the plugin is no longer deployed".into(),
            },
        };
        self.inner.count(tenant, plugin, &topic, |c| {
            c.in_flight = c.in_flight.saturating_sub(1)
        });
        let label = match &outcome {
            Outcome::Done => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
        };
        self.inner
            .metrics
            .event_handled(tenant, plugin, &topic, label, delivery.emitted_at_us);
        match outcome {
            Outcome::Done => {}
            Outcome::Retry { after, error: _ } => {
                self.inner
                    .count(tenant, plugin, &topic, |c| c.retrying += 1);
                let inner = self.inner.clone();
                let (tenant, plugin) = (tenant.clone(), plugin.clone());
                let token = self.inner.workers.shutdown.clone();
                self.inner.workers.tracker.spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(after) => {}
                    }
                    inner.count(&tenant, &plugin, &delivery.topic, |c| {
                        c.retrying = c.retrying.saturating_sub(1)
                    });
                    let next = Delivery {
                        attempt: delivery.attempt + 1,
                        ..delivery
                    };
                    inner.enqueue(&tenant, &plugin, next);
                });
            }
            Outcome::Dead { error } => {
                let letter = DeadLetter {
                    id: crate::ids::fast_uuid().to_string(),
                    event_id: delivery.id.clone(),
                    plugin: plugin.clone(),
                    topic: topic.clone(),
                    attempts: delivery.attempt,
                    error,
                    emitted_at: delivery.emitted_at_us / 1000,
                    failed_at: now_ms(),
                    payload: payload_text(&delivery.payload),
                    payload_bytes: delivery.payload.len(),
                };
                let mut dead = lock(&self.inner.dead);
                let letters = dead.entry(tenant.clone()).or_default();
                letters.push((letter, delivery.payload));
                let excess = letters
                    .len()
                    .saturating_sub(self.inner.config.max_dead_letters);
                letters.drain(..excess);
            }
        }
    }
}
