//! The tasks that deliver one tenant's events: a reader per stream and
//! consumer group, a claimer that takes over what dead instances left, and the
//! pump that moves due retries back into delivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::store::redis::RedisConnection;
use redis::streams::StreamAutoClaimReply;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::keys::{Keys, RetryMember};
use super::records::{DeadRecord, EventRecord, ReadReply, parse_delivery};
use super::{Inner, READ_BATCH};

/// Where a reader reads: a stream, its consumer group (the plugin), and the
/// subscription's topic with its handler limit and figures (`None` for the
/// plugin's direct stream, whose entries mix topics). Shared by the reader
/// and every event it hands out, so nothing of it is copied per event.
pub(crate) struct Source {
    pub stream: String,
    pub group: String,
    pub subscription: Option<SourceSubscription>,
}

/// The subscription a topic stream's group belongs to.
pub(crate) struct SourceSubscription {
    /// Its `concurrency`, shared with its entries in the direct stream.
    pub handlers: Arc<Semaphore>,
    pub metrics: SubscriptionMetrics,
}

/// A free handler: an instance-wide slot and, once known, the subscription's.
type Slot = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);
use crate::events::delivery::{self, Delivery, Outcome};
use crate::events::now_ms;
use crate::metrics::SubscriptionMetrics;
use crate::tenants::Registry;

/// The tasks of one tenant share this (behind an `Arc`: each event's task
/// holds it).
pub(super) struct Worker {
    pub inner: Arc<Inner>,
    pub registry: Arc<Registry>,
    pub tenant: String,
    pub keys: Keys,
    pub semaphores: Arc<HashMap<(String, String), Arc<Semaphore>>>,
    pub token: CancellationToken,
    /// Done events' acknowledgements, for [`ack_loop`].
    pub acks: mpsc::Sender<Ack>,
}

/// Acknowledgements sent in one pipeline at most.
pub(super) const ACK_BATCH: usize = 256;

/// A done event's acknowledgement: its entry of a stream for a group.
pub(super) struct Ack {
    source: Arc<Source>,
    entry_id: String,
}

/// Sends done events' acknowledgements in batches: whatever queued up while
/// the last batch was on its way goes in the next, one `XACK` per stream and
/// group, pipelined, instead of a round trip (and a handler held through it)
/// per event. No timer: under load the batches fill by themselves, alone an
/// ack goes out at once. Runs until every sender is gone (the tenant's
/// worker tasks have ended), so a reload or shutdown sends what is queued;
/// an ack that fails leaves its entry pending, to be claimed again after the
/// visibility timeout, as a failed `XACK` always did.
pub(super) async fn ack_loop(inner: Arc<Inner>, tenant: String, mut queue: mpsc::Receiver<Ack>) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while queue.recv_many(&mut batch, ACK_BATCH).await > 0 {
        let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for ack in &batch {
            groups
                .entry((&ack.source.stream, &ack.source.group))
                .or_default()
                .push(&ack.entry_id);
        }
        let mut pipe = redis::pipe();
        for ((stream, group), ids) in &groups {
            pipe.cmd("XACK").arg(*stream).arg(*group).arg(ids);
        }
        let acked: Result<Vec<i64>, _> = pipe.query_async(&mut inner.store.connection()).await;
        match acked {
            Ok(acked) => {
                let acked: i64 = acked.iter().sum();
                if usize::try_from(acked).unwrap_or(0) < batch.len() {
                    tracing::info!(%tenant, settled_elsewhere = batch.len() as i64 - acked, "events were settled by another instance meanwhile");
                }
            }
            Err(error) => {
                tracing::warn!(%tenant, events = batch.len(), %error, "acknowledging events failed; they are claimed again after the visibility timeout");
            }
        }
        batch.clear();
    }
}

impl Worker {
    /// Reads new entries of one stream for one group, only as many as there are
    /// free handlers: an entry that waited here for a handler would age in the
    /// group's pending list and be taken over by another instance, and run twice.
    pub async fn read_loop(self: Arc<Self>, source: Arc<Source>) {
        let block = Duration::from_millis(self.inner.config.read_block_ms);
        let Some(mut connection) = self.connect(block).await else {
            return;
        };
        // Events were waiting at the last read: read again at once, with
        // every free handler, and wait (blocking, one handler) only once a
        // read comes back empty.
        let mut hot = false;
        while !self.token.is_cancelled() {
            if hot {
                let Some(slots) = self.slots(&source, READ_BATCH, true).await else {
                    return;
                };
                hot = match self.read(&mut connection, &source, slots, false).await {
                    Ok(came) => came,
                    Err(error) => {
                        self.recover(&source, error, &mut connection, block).await;
                        false
                    }
                };
                continue;
            }
            // While waiting for events, one handler is held, not all: the
            // subscription's other handlers stay free for its retries.
            let Some(first) = self.slots(&source, 1, true).await else {
                return;
            };
            // Not raced against cancellation: once Redis handed entries to this
            // consumer they are ours to finish (within the shutdown grace).
            let came = match self.read(&mut connection, &source, first, true).await {
                Ok(came) => came,
                Err(error) => {
                    self.recover(&source, error, &mut connection, block).await;
                    continue;
                }
            };
            // An event came: take what else is waiting, as many as handlers are free.
            let more = match came {
                true => self.slots(&source, READ_BATCH - 1, false).await,
                false => None,
            };
            if let Some(more) = more {
                match self.read(&mut connection, &source, more, false).await {
                    Ok(came) => hot = came,
                    Err(error) => self.recover(&source, error, &mut connection, block).await,
                }
            }
        }
    }

    /// After a failed read: the group created again when Redis lost it, else a
    /// pause and a new connection.
    async fn recover(
        &self,
        source: &Source,
        error: redis::RedisError,
        connection: &mut RedisConnection,
        block: Duration,
    ) {
        if is_no_group(&error) {
            self.recreate_group(source).await;
            return;
        }
        tracing::warn!(tenant = %self.tenant, stream = %source.stream, %error, "reading events failed; retrying");
        self.pause(Duration::from_secs(1)).await;
        if let Some(fresh) = self.connect(block).await {
            *connection = fresh;
        }
    }

    /// One `XREADGROUP` for as many entries as `slots` (waiting up to the read
    /// block with `block`), each dispatched with its slot; unused slots are
    /// freed. True when an entry came.
    async fn read(
        self: &Arc<Self>,
        connection: &mut RedisConnection,
        source: &Arc<Source>,
        mut slots: Vec<Slot>,
        block: bool,
    ) -> Result<bool, redis::RedisError> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&source.group)
            .arg(&self.inner.consumer)
            .arg("COUNT")
            .arg(slots.len());
        if block {
            command.arg("BLOCK").arg(self.inner.config.read_block_ms);
        }
        let ReadReply(entries) = command
            .arg("STREAMS")
            .arg(&source.stream)
            .arg(">")
            .query_async(connection)
            .await?;
        let came = !entries.is_empty();
        for entry in entries {
            let Some(slot) = slots.pop() else { break };
            self.dispatch(source, entry.id, entry.delivery, slot).await;
        }
        Ok(came)
    }

    /// Takes over entries that another (dead) instance took and never finished,
    /// as many at a time as there are free handlers (claiming resets an entry's
    /// idle time, so one claimed and left waiting would be claimed again).
    pub async fn claim_loop(self: Arc<Self>, sources: Vec<Arc<Source>>) {
        let visibility = self.inner.config.visibility_timeout_ms;
        let every = Duration::from_millis((visibility / 4).max(250));
        loop {
            if self.pause(every).await {
                return;
            }
            for source in &sources {
                let mut cursor = "0-0".to_owned();
                loop {
                    // Only what is free now: a busy instance leaves stale entries to idle ones.
                    let Some(mut slots) = self.slots(source, READ_BATCH, false).await else {
                        break;
                    };
                    let reply: Result<StreamAutoClaimReply, _> = redis::cmd("XAUTOCLAIM")
                        .arg(&source.stream)
                        .arg(&source.group)
                        .arg(&self.inner.consumer)
                        .arg(visibility)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(slots.len())
                        .query_async(&mut self.inner.store.connection())
                        .await;
                    let reply = match reply {
                        Ok(reply) => reply,
                        Err(error) if is_no_group(&error) => {
                            self.recreate_group(source).await;
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(tenant = %self.tenant, stream = %source.stream, %error, "claiming stale events failed");
                            break;
                        }
                    };
                    for entry in reply.claimed {
                        tracing::info!(tenant = %self.tenant, stream = %source.stream, entry = %entry.id, "taking over an event another instance did not finish");
                        let Some(slot) = slots.pop() else { break };
                        let delivery = parse_delivery(&entry);
                        self.dispatch(source, entry.id, delivery, slot).await;
                    }
                    if reply.next_stream_id == "0-0" || self.token.is_cancelled() {
                        break;
                    }
                    cursor = reply.next_stream_id;
                }
            }
        }
    }

    /// Free handlers for entries of `source`: an instance-wide slot with the
    /// subscription's own, as many as are free now (at most `most`). With
    /// `wait`, waits for the first; without, `None` when none is free. A
    /// plugin's direct stream (retries, replays) mixes topics, so there one
    /// entry is taken at a time and its subscription's slot taken once it is read.
    async fn slots(&self, source: &Source, most: usize, wait: bool) -> Option<Vec<Slot>> {
        let local = source.subscription.as_ref().map(|s| s.handlers.clone());
        let global = &self.inner.workers.global;
        let first = if wait {
            let local = match &local {
                Some(semaphore) => Some(tokio::select! {
                    () = self.token.cancelled() => return None,
                    permit = semaphore.clone().acquire_owned() => permit.ok()?,
                }),
                None => None,
            };
            let global = tokio::select! {
                () = self.token.cancelled() => return None,
                permit = global.clone().acquire_owned() => permit.ok()?,
            };
            (global, local)
        } else {
            let local = match &local {
                Some(semaphore) => Some(semaphore.clone().try_acquire_owned().ok()?),
                None => None,
            };
            (global.clone().try_acquire_owned().ok()?, local)
        };
        let mut slots = vec![first];
        let most = if local.is_some() { most } else { 1 };
        while slots.len() < most {
            let Some(Ok(local)) = local.as_ref().map(|s| s.clone().try_acquire_owned()) else {
                break;
            };
            let Ok(global) = global.clone().try_acquire_owned() else {
                break;
            };
            slots.push((global, Some(local)));
        }
        Some(slots)
    }

    /// Moves retries that are due into their plugin's stream.
    pub async fn pump_loop(self: Arc<Self>) {
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
                    .key(self.keys.retry_counts())
                    .arg(member)
                    .arg(self.inner.config.max_stream_length)
                    .invoke_async(&mut self.inner.store.connection())
                    .await;
                if let Err(error) = moved {
                    tracing::warn!(tenant = %self.tenant, %error, "moving a due retry failed");
                }
            }
        }
    }

    /// Handles the entry in its own task, holding its slot; an entry of a direct
    /// stream first takes its subscription's slot.
    async fn dispatch(
        self: &Arc<Self>,
        source: &Arc<Source>,
        entry_id: String,
        delivery: Option<Delivery>,
        slot: Slot,
    ) {
        let (stream, group) = (source.stream.as_str(), source.group.as_str());
        let Some(delivery) = delivery else {
            tracing::error!(tenant = %self.tenant, %stream, entry = %entry_id, "malformed event entry; dropped");
            let _: Result<i64, _> = redis::cmd("XACK")
                .arg(stream)
                .arg(group)
                .arg(&entry_id)
                .query_async(&mut self.inner.store.connection())
                .await;
            return;
        };
        let (global, mut local) = slot;
        if local.is_none()
            && let Some(semaphore) = self
                .semaphores
                .get(&(group.to_owned(), delivery.topic.clone()))
        {
            local = semaphore.clone().acquire_owned().await.ok();
        }
        let worker = self.clone();
        let source = source.clone();
        self.inner.workers.tracker.spawn(async move {
            let _permits = (global, local);
            worker.handle(source, entry_id, delivery).await;
        });
    }

    async fn handle(&self, source: Arc<Source>, entry_id: String, delivery: Delivery) {
        let (stream, group) = (source.stream.as_str(), source.group.as_str());
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
        let label = outcome_label(&outcome);
        match &source.subscription {
            Some(subscription) => subscription.metrics.handled(label, delivery.emitted_at_us),
            None => self.inner.metrics.event_handled(
                &self.tenant,
                group,
                &delivery.topic,
                label,
                delivery.emitted_at_us,
            ),
        }
        // A done event's ack is queued and the handler is free: the ack goes
        // with the next batch. Only when the queue is gone is it settled here.
        let entry_id = match outcome {
            Outcome::Done => {
                let ack = Ack {
                    source: source.clone(),
                    entry_id,
                };
                match self.acks.send(ack).await {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(ack)) => ack.entry_id,
                }
            }
            _ => entry_id,
        };
        let entry_id = entry_id.as_str();
        let taken = Taken {
            keys: &self.keys,
            stream,
            group,
            entry_id,
        };
        let result = self.inner.settle(&taken, &delivery, outcome).await;
        match result {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(tenant = %self.tenant, %stream, entry = %entry_id, "the event was settled by another instance meanwhile; outcome not recorded again")
            }
            // The entry stays pending and is claimed again after the visibility timeout.
            Err(error) => {
                tracing::warn!(tenant = %self.tenant, %stream, entry = %entry_id, %error, "recording the outcome of an event failed")
            }
        }
    }

    /// Creates the group of `source` again after Redis lost it (its data, or a
    /// fail-over to a replica without it). From the stream's start: whatever
    /// is in the stream now was emitted after the loss and not yet delivered.
    async fn recreate_group(&self, source: &Source) {
        match super::create_group(&self.inner.store, &source.stream, &source.group, "0").await {
            Ok(()) => {
                tracing::warn!(tenant = %self.tenant, stream = %source.stream, group = %source.group, "consumer group was gone (Redis lost it); created again");
                self.inner.metrics.event_group_recreated(&self.tenant);
            }
            Err(error) => {
                tracing::warn!(tenant = %self.tenant, stream = %source.stream, %error, "cannot create the consumer group again; retrying");
                self.pause(Duration::from_secs(1)).await;
            }
        }
    }

    async fn connect(&self, block: Duration) -> Option<RedisConnection> {
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

/// An entry this instance took from a stream for a group.
pub(super) struct Taken<'a> {
    pub keys: &'a Keys,
    pub stream: &'a str,
    pub group: &'a str,
    pub entry_id: &'a str,
}

impl Inner {
    /// Records a delivery's outcome: acknowledged, parked for a retry, or moved
    /// to the dead letters, each in one step with the acknowledgement. False
    /// when the entry was no longer pending here (another instance settled it):
    /// then nothing is recorded, so a retry or dead letter is never doubled.
    pub(super) async fn settle(
        &self,
        taken: &Taken<'_>,
        delivery: &Delivery,
        outcome: Outcome,
    ) -> Result<bool, redis::RedisError> {
        let mut connection = self.store.connection();
        let Taken {
            keys,
            stream,
            group,
            entry_id,
        } = taken;
        match outcome {
            Outcome::Done => redis::cmd("XACK")
                .arg(*stream)
                .arg(*group)
                .arg(*entry_id)
                .query_async::<i64>(&mut connection)
                .await
                .map(|acked| acked == 1),
            Outcome::Retry { after, error: _ } => {
                let record = crate::ids::fast_uuid().simple().to_string();
                let member = format!("{group}|{record}|{}", delivery.topic);
                let due =
                    now_ms().saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                let mut invocation = self.scripts.retry.key(*stream);
                invocation
                    .key(keys.retry_set())
                    .key(keys.retry_record(&record))
                    .key(keys.retry_counts())
                    .arg(*group)
                    .arg(*entry_id)
                    .arg(due)
                    .arg(member)
                    .arg(format!("{group}|{}", delivery.topic));
                EventRecord {
                    attempt: delivery.attempt + 1,
                    ..EventRecord::of(delivery)
                }
                .write(&mut invocation);
                invocation
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map(|parked| parked == 1)
            }
            Outcome::Dead { error } => {
                let mut invocation = self.scripts.dead.key(*stream);
                invocation
                    .key(keys.dead())
                    .key(keys.dead_counts())
                    .arg(*group)
                    .arg(*entry_id)
                    .arg(self.config.max_dead_letters)
                    .arg(format!("{group}|{}", delivery.topic));
                DeadRecord {
                    event: EventRecord::of(delivery),
                    plugin: group,
                    error: &error,
                    failed_at_ms: now_ms(),
                }
                .write(&mut invocation);
                invocation
                    .invoke_async::<Option<String>>(&mut connection)
                    .await
                    .map(|kept| kept.is_some())
            }
        }
    }
}

/// Redis answers `NOGROUP` when the stream or its group is gone.
fn is_no_group(error: &redis::RedisError) -> bool {
    error.code() == Some("NOGROUP") || error.to_string().contains("NOGROUP")
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead",
    }
}
