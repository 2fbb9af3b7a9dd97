//! `config` and `secrets`: the plugin's own settings and secrets for the current tenant.

use super::HostState;
use bitbylaw_bindings::{config, secrets};

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.plugin.config.get(&key).cloned()
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.plugin
            .config
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

impl secrets::Host for HostState {
    fn get(&mut self, name: String) -> Option<String> {
        self.plugin
            .secrets
            .get(&name)
            .map(|secret| secret.expose().to_owned())
    }
}
