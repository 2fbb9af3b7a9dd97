//! Events between the plugins of one tenant.
//!
//! This is the in-process bus: `emit` queues the event, a dispatcher task hands
//! it to every subscribed plugin of the same tenant. Nothing survives a restart
//! and there are no retries; the durable bus on Redis Streams replaces the
//! [`EventBus`] internals without changing its interface.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::capabilities::wit_handler as wit;
use crate::runtime::Registry;
use crate::store::StoreError;

/// Events waiting for the dispatcher; past this `emit` fails instead of piling up.
const QUEUE_CAPACITY: usize = 10_000;

/// Where plugins emit to. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    sender: mpsc::Sender<Envelope>,
}

/// An event on its way to its subscribers.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    pub tenant: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub emitted_at_ms: u64,
}

impl EventBus {
    /// The bus and the receiving end for [`dispatch`].
    pub fn new() -> (Self, mpsc::Receiver<Envelope>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        (Self { sender }, receiver)
    }

    /// Queues an event for `tenant`'s subscribers of `topic`; returns its id.
    pub async fn emit(
        &self,
        tenant: &str,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let envelope = Envelope {
            id: id.clone(),
            tenant: tenant.to_owned(),
            topic: topic.to_owned(),
            payload,
            emitted_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        };
        self.sender
            .try_send(envelope)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => {
                    StoreError::Unavailable("event queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    StoreError::Unavailable("event bus has stopped".into())
                }
            })?;
        Ok(id)
    }
}

/// Delivers queued events until the receiver closes. Each delivery runs as its
/// own task so a slow subscriber does not hold up the others.
pub async fn dispatch(registry: Arc<Registry>, mut receiver: mpsc::Receiver<Envelope>) {
    while let Some(envelope) = receiver.recv().await {
        let deployment = registry.current();
        let Some(tenant) = deployment.tenant(&envelope.tenant) else {
            continue;
        };
        for plugin in tenant.subscribers(&envelope.topic) {
            let plugin = plugin.clone();
            let event = wit::Event {
                id: envelope.id.clone(),
                topic: envelope.topic.clone(),
                payload: envelope.payload.clone(),
                attempt: 1,
                emitted_at: envelope.emitted_at_ms,
            };
            tokio::spawn(async move {
                let context = plugin.context();
                match plugin.handle_event(event).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(tenant = %context.tenant, plugin = %context.name, ?error, "event handler failed")
                    }
                    Err(error) => {
                        tracing::error!(tenant = %context.tenant, plugin = %context.name, %error, "event handler crashed")
                    }
                }
            });
        }
    }
}
