//! `events`: emit to the plugins of the same tenant that subscribe to the topic.

use super::WitStoreError;
use super::generated::bitbylaw::plugin::events::Host;
use crate::runtime::HostState;

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
            .map_err(Into::into)
    }
}
