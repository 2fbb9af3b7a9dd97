//! `events`: emit to the plugins of the same tenant that subscribe to the topic.

use std::future::Future;
use std::pin::Pin;

use super::HostState;
use super::{IntoWit, WitStoreError};
use bitbylaw_bindings::events::Host;

/// Where plugins' events go. The event bus implements it; capabilities know
/// nothing more of the bus than this.
pub trait Emitter: Send + Sync {
    /// Queues an event for `tenant`'s subscribers of `topic`; returns its id.
    fn emit<'a>(
        &'a self,
        tenant: &'a str,
        topic: &'a str,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, crate::store::StoreError>> + Send + 'a>>;

    /// Queues one event per payload, all or none.
    fn emit_all<'a>(
        &'a self,
        tenant: &'a str,
        topic: &'a str,
        payloads: Vec<Vec<u8>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), crate::store::StoreError>> + Send + 'a>>;
}

/// Largest event payload; events carry references, not documents.
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Most events one `emit-all` takes, and most bytes in all: a batch, not a backlog.
const MAX_BATCH_EVENTS: usize = 1000;
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

fn check_topic(topic: &str) -> Result<(), WitStoreError> {
    if topic.is_empty() || topic.len() > 256 {
        return Err(WitStoreError::Invalid(
            "topic must be 1 to 256 bytes".into(),
        ));
    }
    Ok(())
}

fn check_payload(payload: &[u8]) -> Result<(), WitStoreError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(WitStoreError::Invalid(format!(
            "payload larger than {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Host for HostState {
    async fn emit(&mut self, topic: String, payload: Vec<u8>) -> Result<(), WitStoreError> {
        check_topic(&topic)?;
        check_payload(&payload)?;
        let emitted = self
            .plugin
            .events
            .emit(&self.plugin.tenant, &topic, payload)
            .await;
        if emitted.is_ok() {
            self.plugin
                .metrics
                .events_emitted(&self.plugin.tenant, &self.plugin.name, &topic, 1);
        }
        emitted.map(|_id| ()).wit()
    }

    async fn emit_all(
        &mut self,
        topic: String,
        payloads: Vec<Vec<u8>>,
    ) -> Result<(), WitStoreError> {
        check_topic(&topic)?;
        if payloads.len() > MAX_BATCH_EVENTS {
            return Err(WitStoreError::Invalid(format!(
                "more than {MAX_BATCH_EVENTS} events in one call"
            )));
        }
        let mut total = 0;
        for payload in &payloads {
            check_payload(payload)?;
            total += payload.len();
        }
        if total > MAX_BATCH_BYTES {
            return Err(WitStoreError::Invalid(format!(
                "payloads larger than {MAX_BATCH_BYTES} bytes in all"
            )));
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let count = payloads.len() as u64;
        let emitted = self
            .plugin
            .events
            .emit_all(&self.plugin.tenant, &topic, payloads)
            .await;
        if emitted.is_ok() {
            self.plugin.metrics.events_emitted(
                &self.plugin.tenant,
                &self.plugin.name,
                &topic,
                count,
            );
        }
        emitted.wit()
    }

    async fn max_attempts(&mut self) -> Option<u32> {
        self.call.max_attempts
    }
}
