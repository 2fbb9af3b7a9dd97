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
}

/// Largest event payload; events carry references, not documents.
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

impl Host for HostState {
    async fn emit(&mut self, topic: String, payload: Vec<u8>) -> Result<(), WitStoreError> {
        if topic.is_empty() || topic.len() > 256 {
            return Err(WitStoreError::Invalid(
                "topic must be 1 to 256 bytes".into(),
            ));
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(WitStoreError::Invalid(format!(
                "payload larger than {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        self.plugin
            .events
            .emit(&self.plugin.tenant, &topic, payload)
            .await
            .map(|_id| ())
            .wit()
    }

    async fn max_attempts(&mut self) -> Option<u32> {
        self.call.max_attempts
    }
}
