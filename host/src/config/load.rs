//! Reading and checking config files. Every error names the file and the key.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{Config, HostConfig, TenantConfig};

const ENV_PREFIX: &str = "BITBYLAW_";

/// A config that cannot be used, and where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}{message}", file.display(), key.as_deref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the offending key, when one is to blame.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn new(file: &Path, key: Option<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            key,
            message: message.into(),
        }
    }
}

/// Loads the host file (with `BITBYLAW_*` overrides) and every tenant file it points to.
/// A broken tenant file does not fail the whole load: it is returned in
/// `Config::broken`, so the other tenants can run while it is reported.
pub fn load(host_file: impl AsRef<Path>) -> Result<Config, ConfigError> {
    let host = load_host(host_file.as_ref(), std::env::vars())?;
    let tenants_dir = host.base_dir.join(&host.tenants_dir);
    let mut tenants = Vec::new();
    let mut broken = Vec::new();
    for file in tenant_files(&tenants_dir)? {
        match load_tenant(&file) {
            Ok(tenant) => tenants.push(tenant),
            Err(error) => broken.push(error),
        }
    }
    Ok(Config {
        host,
        tenants,
        broken,
    })
}

/// The tenant files (`*.toml`) in `dir`, in name order.
pub fn tenant_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::new(dir, None, format!("cannot read the tenants folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The tenant id a tenant file stands for (its name without `.toml`).
pub fn tenant_id(file: &Path) -> String {
    file.file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// Loads the host file, applying overrides from `env` (`BITBYLAW_SECTION__KEY=value`).
pub fn load_host(
    file: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<HostConfig, ConfigError> {
    let text = read(file)?;
    let mut table = parse_toml(file, &text)?;
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(ENV_PREFIX) {
            apply_override(&mut table, path, &value).map_err(|message| {
                ConfigError::new(file, None, format!("environment `{name}`: {message}"))
            })?;
        }
    }
    let mut host: HostConfig = deserialize(file, table)?;
    host.base_dir = parent_dir(file);
    check_host(file, &host)?;
    Ok(host)
}

/// A Redis URL must be one, and must not carry the password.
fn check_redis_url(file: &Path, key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConfigError::new(file, Some(key.into()), format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(ConfigError::new(
            file,
            Some(key.into()),
            "scheme must be redis:// or rediss://",
        ));
    }
    if parsed.password().is_some() {
        return Err(ConfigError::new(
            file,
            Some(key.into()),
            "holds a password; put it in `store.redis_password = { env = \"...\" }` instead",
        ));
    }
    Ok(())
}

/// Loads one tenant file; the tenant id is the file name without `.toml`.
pub fn load_tenant(file: &Path) -> Result<TenantConfig, ConfigError> {
    let text = read(file)?;
    parse_tenant(file, &tenant_id(file), &text)
}

/// Parses tenant TOML as if read from `file`.
pub fn parse_tenant(file: &Path, id: &str, text: &str) -> Result<TenantConfig, ConfigError> {
    if !is_identifier(id) {
        return Err(ConfigError::new(
            file,
            None,
            format!("tenant id `{id}` (the file name) may only hold letters, digits, `-` and `_`"),
        ));
    }
    let table = parse_toml(file, text)?;
    let mut tenant: TenantConfig = deserialize(file, table)?;
    tenant.id = id.to_owned();
    tenant.base_dir = parent_dir(file);
    tenant.file = file.to_owned();
    read_accounts(file, &mut tenant)?;
    check_tenant(file, &tenant)?;
    Ok(tenant)
}

fn check_host(file: &Path, host: &HostConfig) -> Result<(), ConfigError> {
    let prefix = &host.store.key_prefix;
    if prefix.is_empty() || prefix.contains(['{', '}']) {
        return Err(ConfigError::new(
            file,
            Some("store.key_prefix".into()),
            "must be non-empty and hold no `{` or `}` (they mark the Redis Cluster hash tag)",
        ));
    }
    if let Some(url) = &host.store.redis_url {
        if !host.store.redis_cluster.is_empty() {
            return Err(ConfigError::new(
                file,
                Some("store.redis_cluster".into()),
                "give either `redis_url` or `redis_cluster`, not both",
            ));
        }
        check_redis_url(file, "store.redis_url", url)?;
    }
    for (index, url) in host.store.redis_cluster.iter().enumerate() {
        check_redis_url(file, &format!("store.redis_cluster[{index}]"), url)?;
    }
    let limits = &host.plugin_defaults;
    check_limits(file, "plugin_defaults", limits, host.runtime.max_memory_mb)?;
    if host.runtime.max_instances == 0 {
        return Err(ConfigError::new(
            file,
            Some("runtime.max_instances".into()),
            "must be at least 1",
        ));
    }
    let events = &host.events;
    if events.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ConfigError::new(
            file,
            Some("events.timezone".into()),
            format!("`{}` is not an IANA time zone", events.timezone),
        ));
    }
    if events.visibility_timeout_ms <= host.plugin_defaults.deadline_ms {
        return Err(ConfigError::new(
            file,
            Some("events.visibility_timeout_ms".into()),
            "must be longer than plugin_defaults.deadline_ms, or slow handlers lose their events to other instances",
        ));
    }
    if events.max_concurrent == 0 || events.read_block_ms == 0 || events.retry_poll_ms == 0 {
        return Err(ConfigError::new(
            file,
            Some("events".into()),
            "max_concurrent, read_block_ms and retry_poll_ms must be at least 1",
        ));
    }
    check_subscription(
        file,
        "events.subscription_defaults",
        &events.subscription_defaults,
    )?;
    if host.runtime.epoch_tick_ms == 0 {
        return Err(ConfigError::new(
            file,
            Some("runtime.epoch_tick_ms".into()),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Limits that cannot work are refused early rather than failing every call.
pub fn check_limits(
    file: &Path,
    section: &str,
    limits: &super::PluginLimits,
    max_memory_mb: u64,
) -> Result<(), ConfigError> {
    let key = |name: &str| Some(format!("{section}.{name}"));
    if limits.deadline_ms == 0 {
        return Err(ConfigError::new(
            file,
            key("deadline_ms"),
            "must be at least 1",
        ));
    }
    if limits.memory_limit_mb == 0 || limits.memory_limit_mb > max_memory_mb {
        return Err(ConfigError::new(
            file,
            key("memory_limit_mb"),
            format!("must be between 1 and runtime.max_memory_mb ({max_memory_mb})"),
        ));
    }
    if limits.max_calls_per_instance == 0 {
        return Err(ConfigError::new(
            file,
            key("max_calls_per_instance"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Retry settings that cannot work are refused early.
pub fn check_subscription(
    file: &Path,
    section: &str,
    settings: &super::SubscriptionSettings,
) -> Result<(), ConfigError> {
    let key = |name: &str| Some(format!("{section}.{name}"));
    if settings.max_attempts == 0 {
        return Err(ConfigError::new(
            file,
            key("max_attempts"),
            "must be at least 1",
        ));
    }
    if !(settings.backoff_factor.is_finite() && settings.backoff_factor >= 1.0) {
        return Err(ConfigError::new(
            file,
            key("backoff_factor"),
            "must be at least 1.0",
        ));
    }
    if !(0.0..1.0).contains(&settings.backoff_jitter) {
        return Err(ConfigError::new(
            file,
            key("backoff_jitter"),
            "must be at least 0 and below 1",
        ));
    }
    if settings.concurrency == 0 {
        return Err(ConfigError::new(
            file,
            key("concurrency"),
            "must be at least 1",
        ));
    }
    Ok(())
}

fn check_tenant(file: &Path, tenant: &TenantConfig) -> Result<(), ConfigError> {
    check_prefix(file, "route_prefix", &tenant.route_prefix)?;
    let limits = &tenant.limits;
    if limits
        .requests_per_second
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        return Err(ConfigError::new(
            file,
            Some("limits.requests_per_second".into()),
            "must be a number above 0",
        ));
    }
    if limits.burst == Some(0) || (limits.burst.is_some() && limits.requests_per_second.is_none()) {
        return Err(ConfigError::new(
            file,
            Some("limits.burst".into()),
            "must be at least 1, and needs limits.requests_per_second",
        ));
    }
    if limits.max_concurrent_instances == Some(0) {
        return Err(ConfigError::new(
            file,
            Some("limits.max_concurrent_instances".into()),
            "must be at least 1",
        ));
    }
    for (name, plugin) in &tenant.plugins {
        if !is_identifier(name) {
            return Err(ConfigError::new(
                file,
                Some(format!("plugins.{name}")),
                "plugin names may only hold letters, digits, `-` and `_`",
            ));
        }
        if RESERVED_PLUGIN_NAMES.contains(&name.as_str()) {
            return Err(ConfigError::new(
                file,
                Some(format!("plugins.{name}")),
                format!(
                    "`{name}` is the name of the host's own keys in the store; the names {} are reserved",
                    RESERVED_PLUGIN_NAMES.join(", ")
                ),
            ));
        }
        match (&plugin.component, &plugin.version) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(ConfigError::new(
                    file,
                    Some(format!("plugins.{name}")),
                    "give exactly one of `component` (a file) and `version` (from the component store)",
                ));
            }
        }
        if let Some(version) = &plugin.version
            && !is_version(version)
        {
            return Err(ConfigError::new(
                file,
                Some(format!("plugins.{name}.version")),
                "a version holds letters, digits, `.`, `-`, `_` and `+` (at most 64)",
            ));
        }
        if let Some(package) = &plugin.package
            && !is_identifier(package)
        {
            return Err(ConfigError::new(
                file,
                Some(format!("plugins.{name}.package")),
                "may only hold letters, digits, `-` and `_`",
            ));
        }
        if let Some(prefix) = &plugin.route_prefix {
            check_prefix(file, &format!("plugins.{name}.route_prefix"), prefix)?;
        }
    }
    Ok(())
}

/// Parses every upstream account by its kind (`[upstreams.<name>]`, and the
/// older `[advoware]`), and turns the older `advoware = true` grant into
/// `upstreams = ["advoware"]`. Grants must name accounts, one per kind.
fn read_accounts(file: &Path, tenant: &mut TenantConfig) -> Result<(), ConfigError> {
    let mut sections: Vec<(String, String, toml::Table)> =
        std::mem::take(&mut tenant.upstream_tables)
            .into_iter()
            .map(|(name, table)| (name.clone(), format!("upstreams.{name}"), table))
            .collect();
    if let Some(mut table) = tenant.legacy_advoware.take() {
        if sections.iter().any(|(name, _, _)| name == LEGACY_ADVOWARE) {
            return Err(ConfigError::new(
                file,
                Some("advoware".into()),
                "the tenant has `[upstreams.advoware]` too; keep one of them",
            ));
        }
        table.insert("kind".into(), toml::Value::String(LEGACY_ADVOWARE.into()));
        sections.push((LEGACY_ADVOWARE.into(), "advoware".into(), table));
    }
    for (name, section, mut table) in sections {
        if !is_identifier(&name) {
            return Err(ConfigError::new(
                file,
                Some(section),
                "account names may only hold letters, digits, `-` and `_`",
            ));
        }
        let kind = match table.remove("kind") {
            Some(toml::Value::String(kind)) => kind,
            _ => {
                return Err(ConfigError::new(
                    file,
                    Some(format!("{section}.kind")),
                    format!(
                        "give the account's kind, one of {}",
                        crate::upstreams::kind_names()
                    ),
                ));
            }
        };
        let Some(kind) = crate::upstreams::kind(&kind) else {
            return Err(ConfigError::new(
                file,
                Some(format!("{section}.kind")),
                format!(
                    "unknown kind `{kind}`; known: {}",
                    crate::upstreams::kind_names()
                ),
            ));
        };
        let settings = kind.parse(table).map_err(|error| {
            let key = match error.key {
                Some(key) => format!("{section}.{key}"),
                None => section.clone(),
            };
            ConfigError::new(file, Some(key), error.message)
        })?;
        tenant.accounts.insert(
            name,
            super::AccountConfig {
                kind,
                settings,
                section,
            },
        );
    }
    for (name, plugin) in &mut tenant.plugins {
        if plugin.advoware {
            if !tenant.accounts.contains_key(LEGACY_ADVOWARE) {
                return Err(ConfigError::new(
                    file,
                    Some(format!("plugins.{name}.advoware")),
                    "the tenant has no `[advoware]` settings to grant",
                ));
            }
            if !plugin.upstreams.iter().any(|a| a == LEGACY_ADVOWARE) {
                plugin.upstreams.push(LEGACY_ADVOWARE.into());
            }
        }
        let mut kinds = Vec::new();
        for (index, account) in plugin.upstreams.iter().enumerate() {
            let key = || Some(format!("plugins.{name}.upstreams[{index}]"));
            let Some(config) = tenant.accounts.get(account) else {
                return Err(ConfigError::new(
                    file,
                    key(),
                    format!("the tenant has no account `{account}` (`[upstreams.{account}]`)"),
                ));
            };
            let kind = config.kind.name();
            if kinds.contains(&kind) {
                return Err(ConfigError::new(
                    file,
                    key(),
                    format!(
                        "a plugin may be granted one account of kind `{kind}`; the kind's interface names no account"
                    ),
                ));
            }
            kinds.push(kind);
        }
    }
    Ok(())
}

/// The host's own key spaces beside the plugins' (`<prefix>:{<tenant>}:<plugin>:`):
/// events, schedules, version history, the ingress bucket. A plugin of one of
/// these names would share keys with them.
pub const RESERVED_PLUGIN_NAMES: [&str; 4] = ["ev", "sched", "host", "ingress"];

/// The account name `[advoware]` and `advoware = true` stand for.
const LEGACY_ADVOWARE: &str = "advoware";

fn check_prefix(file: &Path, key: &str, prefix: &str) -> Result<(), ConfigError> {
    if !prefix.is_empty()
        && (!prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains(['{', '}']))
    {
        return Err(ConfigError::new(
            file,
            Some(key.into()),
            "must be empty or start with `/`, not end with `/`, and hold no `{` or `}`",
        ));
    }
    Ok(())
}

/// Component versions: `1.2.0`, `2026-11-27.1`, `1.0.0-rc.1+build5`.
pub fn is_version(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}

pub fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, None, format!("cannot read: {e}")))
}

fn parse_toml(file: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::new(file, None, format!("invalid TOML: {e}")))
}

fn deserialize<T: DeserializeOwned>(file: &Path, table: toml::Table) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
        let path = error.path().to_string();
        let key = (path != ".").then_some(path);
        ConfigError::new(file, key, error.into_inner().to_string())
    })
}

/// Sets `SECTION__KEY` (case-insensitive) in `table`; the value is read as TOML when it parses, else as a string.
fn apply_override(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    let Some((last, sections)) = keys.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for section in sections {
        let entry = current
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{section}` is not a section"))?;
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    current.insert(last.clone(), value);
    Ok(())
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn unknown_host_key_names_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "host.toml", "[runtime]\nmax_instancez = 3\n");
        let error = load_host(&file, []).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("host.toml"), "{text}");
        assert_eq!(error.key.as_deref(), Some("runtime.max_instancez"));
        assert!(text.contains("unknown field `max_instancez`"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "host.toml",
            "[ingress]\nmax_body_bytes = \"lots\"\n",
        );
        let error = load_host(&file, []).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("ingress.max_body_bytes"));
    }

    #[test]
    fn environment_overrides_host_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "host.toml", "listen = \"127.0.0.1:1\"\n");
        let env = [
            ("BITBYLAW_LISTEN".to_owned(), "127.0.0.1:9999".to_owned()),
            (
                "BITBYLAW_STORE__REDIS_URL".to_owned(),
                "redis://127.0.0.1:6379/3".to_owned(),
            ),
            (
                "BITBYLAW_RUNTIME__MAX_INSTANCES".to_owned(),
                "12".to_owned(),
            ),
            ("OTHER".to_owned(), "ignored".to_owned()),
        ];
        let host = load_host(&file, env).unwrap();
        assert_eq!(host.listen.port(), 9999);
        assert_eq!(
            host.store.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379/3")
        );
        assert_eq!(host.runtime.max_instances, 12);
    }

    #[test]
    fn unknown_key_from_environment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "host.toml", "");
        let env = [("BITBYLAW_LISTNE".to_owned(), "x".to_owned())];
        let text = load_host(&file, env).unwrap_err().to_string();
        assert!(text.contains("unknown field `listne`"), "{text}");
    }

    #[test]
    fn password_in_redis_url_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "host.toml",
            "[store]\nredis_url = \"redis://:hunter2@localhost/0\"\n",
        );
        let error = load_host(&file, []).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("store.redis_url"));
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn tenant_errors_name_the_plugin_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "firm-a.toml",
            "[plugins.hello]\ncomponent = \"hello.wasm\"\n[plugins.hello.limits]\ndeadline = 5\n",
        );
        let error = load_tenant(&file).unwrap_err();
        assert!(error.to_string().contains("firm-a.toml"));
        assert_eq!(error.key.as_deref(), Some("plugins.hello.limits.deadline"));
        assert!(
            error.message.contains("unknown field `deadline`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn bad_origin_is_refused_with_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "firm-a.toml",
            "[plugins.hello]\ncomponent = \"hello.wasm\"\nallowed_origins = [\"https://ok.example\", \"ftp://x\"]\n",
        );
        let error = load_tenant(&file).unwrap_err();
        assert_eq!(
            error.key.as_deref(),
            Some("plugins.hello.allowed_origins[1]")
        );
    }

    const ADVOWARE: &str = "[advoware]\napp_id = \"a\"\nkanzlei = \"k\"\ndatabase = \"d\"\nuser = \"SB\"\napi_key = { env = \"X\" }\npassword = { env = \"Y\" }\n";

    #[test]
    fn advoware_needs_urls_or_discovery() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "firm-a.toml", ADVOWARE);
        let error = load_tenant(&file).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("advoware.discovery_url"));

        let text =
            format!("{ADVOWARE}api_url = \"ftp://relay\"\nsecurity_gateway = \"https://gw/\"\n");
        let file = write(dir.path(), "firm-a.toml", &text);
        let error = load_tenant(&file).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("advoware.api_url"));

        let text = format!(
            "{ADVOWARE}api_url = \"https://relay:90\"\nsecurity_gateway = \"https://gw/\"\n"
        );
        let file = write(dir.path(), "firm-a.toml", &text);
        let tenant = load_tenant(&file).unwrap();
        assert_eq!(tenant.accounts["advoware"].kind.name(), "advoware");
    }

    #[test]
    fn advoware_cannot_be_granted_without_an_account() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "firm-a.toml",
            "[plugins.proxy]\ncomponent = \"p.wasm\"\nadvoware = true\n",
        );
        let error = load_tenant(&file).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("plugins.proxy.advoware"));
    }

    const ACCOUNT: &str = "app_id = \"a\"\nkanzlei = \"k\"\ndatabase = \"d\"\nuser = \"SB\"\napi_key = { env = \"X\" }\npassword = { env = \"Y\" }\napi_url = \"https://relay:90\"\nsecurity_gateway = \"https://gw/\"\n";

    fn tenant_error(text: &str) -> ConfigError {
        let dir = tempfile::tempdir().unwrap();
        load_tenant(&write(dir.path(), "firm-a.toml", text)).unwrap_err()
    }

    #[test]
    fn accounts_are_declared_once_and_granted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[upstreams.kanzlei-advoware]\nkind = \"advoware\"\n{ACCOUNT}\n[plugins.proxy]\ncomponent = \"p.wasm\"\nupstreams = [\"kanzlei-advoware\"]\n[plugins.other]\ncomponent = \"o.wasm\"\n"
        );
        let tenant = load_tenant(&write(dir.path(), "firm-a.toml", &text)).unwrap();
        let account = &tenant.accounts["kanzlei-advoware"];
        assert_eq!(account.kind.name(), "advoware");
        assert_eq!(account.section, "upstreams.kanzlei-advoware");
        assert_eq!(tenant.plugins["proxy"].upstreams, ["kanzlei-advoware"]);
        assert!(tenant.plugins["other"].upstreams.is_empty());
    }

    #[test]
    fn the_older_advoware_section_is_an_account_named_advoware() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[advoware]\n{ACCOUNT}\n[plugins.proxy]\ncomponent = \"p.wasm\"\nadvoware = true\n"
        );
        let tenant = load_tenant(&write(dir.path(), "firm-a.toml", &text)).unwrap();
        assert_eq!(tenant.accounts["advoware"].section, "advoware");
        assert_eq!(tenant.plugins["proxy"].upstreams, ["advoware"]);

        let both =
            format!("[advoware]\n{ACCOUNT}\n[upstreams.advoware]\nkind = \"advoware\"\n{ACCOUNT}");
        assert_eq!(tenant_error(&both).key.as_deref(), Some("advoware"));
    }

    #[test]
    fn account_errors_name_the_section_and_key() {
        let missing_kind = format!("[upstreams.crm]\n{ACCOUNT}");
        let error = tenant_error(&missing_kind);
        assert_eq!(error.key.as_deref(), Some("upstreams.crm.kind"));
        assert!(error.message.contains("`advoware`"), "{}", error.message);

        let unknown = format!("[upstreams.crm]\nkind = \"salesforce\"\n{ACCOUNT}");
        let error = tenant_error(&unknown);
        assert_eq!(error.key.as_deref(), Some("upstreams.crm.kind"));
        assert!(
            error.message.contains("unknown kind `salesforce`"),
            "{}",
            error.message
        );

        let typo = format!("[upstreams.aw]\nkind = \"advoware\"\n{ACCOUNT}timeout = 5\n");
        let error = tenant_error(&typo);
        assert_eq!(error.key.as_deref(), Some("upstreams.aw.timeout"));

        let bad = format!("[upstreams.aw]\nkind = \"advoware\"\n{ACCOUNT}")
            .replace("https://relay:90", "ftp://relay");
        assert_eq!(
            tenant_error(&bad).key.as_deref(),
            Some("upstreams.aw.api_url")
        );
    }

    #[test]
    fn grants_name_existing_accounts_one_per_kind() {
        let unknown = "[plugins.proxy]\ncomponent = \"p.wasm\"\nupstreams = [\"nope\"]\n";
        let error = tenant_error(unknown);
        assert_eq!(error.key.as_deref(), Some("plugins.proxy.upstreams[0]"));

        let two = format!(
            "[upstreams.a]\nkind = \"advoware\"\n{ACCOUNT}[upstreams.b]\nkind = \"advoware\"\n{ACCOUNT}[plugins.proxy]\ncomponent = \"p.wasm\"\nupstreams = [\"a\", \"b\"]\n"
        );
        let error = tenant_error(&two);
        assert_eq!(error.key.as_deref(), Some("plugins.proxy.upstreams[1]"));
        assert!(
            error.message.contains("one account of kind `advoware`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn plugins_cannot_take_the_names_of_the_hosts_keys() {
        for name in RESERVED_PLUGIN_NAMES {
            let error = tenant_error(&format!("[plugins.{name}]\ncomponent = \"p.wasm\"\n"));
            assert_eq!(
                error.key.as_deref(),
                Some(format!("plugins.{name}").as_str())
            );
            assert!(error.message.contains("reserved"), "{}", error.message);
        }
    }

    #[test]
    fn secrets_resolve_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "key.txt", "s3cret\n");
        let secret = crate::config::SecretRef::File {
            file: "key.txt".into(),
        }
        .resolve(dir.path())
        .unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }
}

/// Generated tenant files: reading one never panics, and whatever is refused
/// says which file. CI runs the default number of cases; a longer run:
/// `PROPTEST_CASES=100000 cargo test -p bitbylaw --lib config::load::properties`.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Lines of tenant files, valid and broken, to combine.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[plugins.hello]".to_owned()),
            Just("component = \"hello.wasm\"".to_owned()),
            Just("version = \"1.0.0\"".to_owned()),
            Just("upstreams = [\"advoware\"]".to_owned()),
            Just("advoware = true".to_owned()),
            Just("[upstreams.advoware]".to_owned()),
            Just("kind = \"advoware\"".to_owned()),
            Just("[advoware]".to_owned()),
            Just("api_url = \"https://relay:90\"".to_owned()),
            Just("security_gateway = \"https://gw/\"".to_owned()),
            Just("app_id = \"a\"\nkanzlei = \"k\"\ndatabase = \"d\"\nuser = \"SB\"".to_owned()),
            Just("api_key = { env = \"X\" }\npassword = { env = \"Y\" }".to_owned()),
            Just(
                "api_keys = [{ env = \"K\" }, { key = { env = \"W\" }, routes = [\"/vmh/*\"] }]"
                    .to_owned()
            ),
            Just("kong_consumers = [\"a\", { name = \"b\", routes = [\"GET /x\"] }]".to_owned()),
            Just("allowed_origins = [\"https://ok.example\", \"ftp://x\"]".to_owned()),
            Just("[plugins.hello.schedules.sync]\ncron = \"61 * * * *\"".to_owned()),
            Just("[plugins.hello.config]\nx = { a = [1, 2] }".to_owned()),
            Just("[limits]\nrequests_per_second = -1".to_owned()),
            Just("route_prefix = \"/a/\"".to_owned()),
            "[a-z_.\\[\\]=\" {}0-9-]{0,30}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn reading_a_tenant_file_never_panics(lines in proptest::collection::vec(line(), 0..10)) {
            let text = lines.join("\n");
            let file = Path::new("/tenants/firm-a.toml");
            if let Err(error) = parse_tenant(file, "firm-a", &text) {
                prop_assert!(error.to_string().starts_with("/tenants/firm-a.toml: "), "{error}");
            }
        }

        #[test]
        fn a_route_rule_never_panics_and_a_prefix_rule_allows_its_own_path(text in "[A-Z]{0,6} ?/?[a-z/{}*]{0,12}") {
            if let Ok(rule) = crate::config::RouteRule::try_from(text.clone()) {
                let last = text.rsplit(' ').next().unwrap_or_default();
                let path = last.strip_suffix('*').unwrap_or(last);
                let method = text.split_once(' ').map(|(m, _)| m).unwrap_or("GET");
                prop_assert!(rule.allows(method, path), "{text}");
            }
        }
    }
}
