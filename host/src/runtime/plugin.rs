//! A plugin loaded for one tenant: its self-description and its instance pool.

use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::Component;

use super::pool::{Call, Reply};
use super::{CallError, InstancePool, Runtime};
use crate::capabilities::PluginContext;
use crate::capabilities::wit_handler as wit;
use crate::config::PluginLimits;

pub struct LoadedPlugin {
    /// sha256 of the component, so logs and the admin API can tell versions apart.
    pub digest: String,
    pub description: wit::Description,
    /// The interfaces the component imports (`bitbylaw:plugin/kv@0.1.0`, WASI's, ...),
    /// so operators can see what it could call beside what it was granted.
    pub imports: Vec<String>,
    pool: InstancePool,
}

impl LoadedPlugin {
    /// Prepares the component and asks it for its self-description. A component
    /// that does not fit the world, or traps while starting, is refused here.
    pub async fn load(
        runtime: &Runtime,
        component: &Component,
        digest: String,
        context: Arc<PluginContext>,
        limits: PluginLimits,
    ) -> anyhow::Result<Self> {
        let pre = runtime.prepare(component)?;
        let imports = component
            .component_type()
            .imports(runtime.engine())
            .map(|(name, _)| name.to_owned())
            .collect();
        let pool = InstancePool::new(pre, context, limits, runtime.idle_budget().clone());
        let description = match pool
            .call("load", Call::Describe)
            .await
            .context("asking the plugin to describe itself")?
        {
            Reply::Describe(description) => description,
            _ => anyhow::bail!("the plugin answered `describe` with something else"),
        };
        Ok(Self {
            digest,
            description,
            imports,
            pool,
        })
    }

    pub fn context(&self) -> &Arc<PluginContext> {
        self.pool.context()
    }

    pub fn pool(&self) -> &InstancePool {
        &self.pool
    }

    pub async fn handle_http(
        &self,
        request_id: &str,
        request: wit::Request,
    ) -> Result<wit::Response, CallError> {
        match self.pool.call(request_id, Call::Http(request)).await? {
            Reply::Http(response) => Ok(response),
            _ => Err(mismatch()),
        }
    }

    /// Hands `event` to the plugin; `max_attempts` is what its subscription
    /// allows (the plugin can ask for it while it handles the event).
    pub async fn handle_event(
        &self,
        event: wit::Event,
        max_attempts: u32,
    ) -> Result<Result<(), wit::HandlerError>, CallError> {
        let request_id = format!("event-{}", event.id);
        match self
            .pool
            .call(&request_id, Call::Event(event, max_attempts))
            .await?
        {
            Reply::Event(outcome) => Ok(outcome),
            _ => Err(mismatch()),
        }
    }

    pub async fn handle_schedule(
        &self,
        tick: wit::Tick,
    ) -> Result<Result<(), wit::HandlerError>, CallError> {
        let request_id = format!("schedule-{}-{}", tick.name, tick.scheduled_at);
        match self.pool.call(&request_id, Call::Schedule(tick)).await? {
            Reply::Schedule(outcome) => Ok(outcome),
            _ => Err(mismatch()),
        }
    }
}

fn mismatch() -> CallError {
    CallError::Trap("the plugin's reply did not match the call".into())
}
