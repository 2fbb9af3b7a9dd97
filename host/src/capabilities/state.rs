//! Per-instance host state: what each `wasmtime::Store` carries.

use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginContext;

/// The data of one instance's store. Capabilities read `plugin` (who is calling)
/// and `call` (which request, until when); WASI gets its own context.
pub struct HostState {
    pub plugin: Arc<PluginContext>,
    pub call: CallContext,
    pub(crate) memory: MemoryLimiter,
    wasi: WasiCtx,
    table: ResourceTable,
}

/// The call an instance is serving right now.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub request_id: String,
    pub deadline: Instant,
    /// While an event is handled: its subscription's `max_attempts`.
    pub max_attempts: Option<u32>,
}

impl HostState {
    pub fn new(plugin: Arc<PluginContext>, memory_limit: usize) -> Self {
        // No files, sockets, environment or arguments: plugins reach the world only
        // through the bitbylaw capabilities. Clocks and randomness are WASI's.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            plugin,
            call: CallContext {
                request_id: String::new(),
                deadline: Instant::now(),
                max_attempts: None,
            },
            memory: MemoryLimiter::new(memory_limit),
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl bitbylaw_core::upstream::UpstreamState for HostState {
    fn upstream_call(&mut self) -> bitbylaw_core::upstream::UpstreamCall<'_> {
        bitbylaw_core::upstream::UpstreamCall {
            tenant: &self.plugin.tenant,
            plugin: &self.plugin.name,
            request_id: &self.call.request_id,
            deadline: self.call.deadline,
            grants: &self.plugin.grants,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps an instance's linear memory and remembers whether the cap was hit, so
/// the resulting trap can be reported as "out of memory" rather than a bug.
pub struct MemoryLimiter {
    limit: usize,
    pub(crate) current: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            current: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.current = desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin needing more than this is broken.
        Ok(desired <= 100_000)
    }
}
