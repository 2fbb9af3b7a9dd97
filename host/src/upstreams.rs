//! The kinds of upstream account this host knows, each from its own crate.
//! Adding a kind is: its crate (settings, client, signing; `host/crates/<kind>`),
//! its WIT interface in `wit/plugin.wit` (and the world's import), its SDK
//! module (`plugins/sdk/src/<kind>.rs`), and one line in the list below. A
//! REST kind takes its request, errors and `send` from
//! `bitbylaw_core::upstream::rest` (docs/architecture.md, "REST kinds").

use bitbylaw_core::upstream::{UpstreamKind, UpstreamState};
use wasmtime::component::Linker;

macro_rules! kinds {
    ($($kind:path),* $(,)?) => {
        /// Every kind, for reading tenant files.
        pub static KINDS: &[&dyn UpstreamKind] = &[$(&$kind),*];

        /// Serves every kind's WIT interface.
        pub fn add_to_linker<T: UpstreamState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$kind as UpstreamKind>::add_to_linker(linker)?;)*
            Ok(())
        }
    };
}

kinds![
    bitbylaw_advoware::Advoware,
    bitbylaw_google::Google,
    bitbylaw_espocrm::EspoCrm,
    bitbylaw_threecx::ThreeCx,
];

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static dyn UpstreamKind> {
    KINDS.iter().copied().find(|kind| kind.name() == name)
}

/// The names of every kind, for error messages.
pub fn kind_names() -> String {
    KINDS
        .iter()
        .map(|kind| format!("`{}`", kind.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
