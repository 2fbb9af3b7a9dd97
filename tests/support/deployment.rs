//! One tenant's deployment for a plugin test: the host settings, the tenant
//! file, the store prefix and the files the tenant file names. Every instance
//! it starts shares them, as host instances of one deployment do: in-process
//! ([`Deployment::start`]) for most tests, or as its own `bitbylaw serve`
//! process ([`Deployment::spawn`]) for a test that kills it with `-9`.
//!
//! A plugin's rig (`calendar::CalendarRig`, `vmh::VmhRig`) starts its
//! simulators, writes the tenant file against them, and hands the rest to this.

use std::path::Path;

use crate::{Backend, HostProcess, TestHost, cache_dir, expand_components, redis_target};

pub struct Deployment {
    /// The tenant's id.
    pub tenant: String,
    /// The whole tenant file (API keys included), `{component:…}` not yet resolved.
    pub tenant_toml: String,
    /// Host settings beyond the test defaults.
    pub host_toml: String,
    /// The store prefix of every instance.
    pub key_prefix: String,
    /// The files the tenant file names (keys, secrets) and the spawned
    /// processes' folders; they outlive every instance.
    files: tempfile::TempDir,
}

impl Deployment {
    /// An empty deployment of `tenant`: fill in [`Self::tenant_toml`] (with
    /// files written to [`Self::files`]) and [`Self::host_toml`].
    pub fn new(tenant: &str, key_prefix: Option<&str>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            tenant_toml: String::new(),
            host_toml: String::new(),
            key_prefix: key_prefix.map_or_else(
                || format!("test-{}", uuid::Uuid::new_v4().simple()),
                str::to_owned,
            ),
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// Where the tenant file's keys and secrets go.
    pub fn files(&self) -> &Path {
        self.files.path()
    }

    /// An instance in this process, on a free port.
    pub async fn start(&self) -> TestHost {
        TestHost::builder(Backend::Redis)
            .host_toml(&self.host_toml)
            .key_prefix(&self.key_prefix)
            .tenant(&self.tenant, None, &self.tenant_toml)
            .start()
            .await
    }

    /// An instance as its own process (`bitbylaw serve`), listening on
    /// `listen` (`127.0.0.1:0` for any port; [`HostProcess::listening`] says
    /// which), its config and log in a folder called `name`.
    pub fn spawn(&self, name: &str, listen: &str) -> HostProcess {
        let dir = self.files.path().join(name);
        std::fs::create_dir_all(dir.join("tenants")).unwrap();
        std::fs::write(
            dir.join("host.toml"),
            format!(
                "listen = \"{listen}\"\n[store]\n{}\nkey_prefix = \"{}\"\n[runtime]\ncache_dir = \"{}\"\n{}",
                redis_target::store_toml(),
                self.key_prefix,
                cache_dir().display(),
                self.host_toml,
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("tenants").join(format!("{}.toml", self.tenant)),
            expand_components(&self.tenant_toml),
        )
        .unwrap();
        HostProcess::spawn(&dir.join("host.toml"), &dir.join("host.log"), &[])
    }
}
