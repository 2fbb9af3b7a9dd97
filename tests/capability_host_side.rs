//! The host side of each capability, called as the generated `Host` traits are
//! called by a guest, without compiling or running any Wasm: a plugin context
//! is built by hand, and each test asserts what the guest would get back.
//! The end-to-end tests (`capabilities.rs`, `advoware.rs`) cover the same
//! interfaces through real components.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitbylaw::capabilities::{CallContext, Emitter, HostState, PluginContext};
use bitbylaw::egress::{Egress, Origin};
use bitbylaw::metrics::Metrics;
use bitbylaw::store::{MemoryStore, Quota, Scope, Store, StoreError};
use bitbylaw_bindings::types::StoreError as WitStoreError;
use bitbylaw_bindings::{advoware, config, events, http, kv, lock, rate_limit, secrets};
use bitbylaw_core::upstream::{Grants, OpenContext, UpstreamKind, UpstreamState};
use bitbylaw_tests::simulators::advoware::Advoware;
use tokio::time::Instant;

/// What plugins emitted, as the bus would have been handed it.
#[derive(Default)]
struct Recorded(Mutex<Vec<(String, String, Vec<u8>)>>);

impl Emitter for Recorded {
    fn emit<'a>(
        &'a self,
        tenant: &'a str,
        topic: &'a str,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, StoreError>> + Send + 'a>> {
        self.0
            .lock()
            .unwrap()
            .push((tenant.to_owned(), topic.to_owned(), payload));
        Box::pin(async { Ok("event-1".to_owned()) })
    }

    fn emit_all<'a>(
        &'a self,
        tenant: &'a str,
        topic: &'a str,
        payloads: Vec<Vec<u8>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        let mut recorded = self.0.lock().unwrap();
        for payload in payloads {
            recorded.push((tenant.to_owned(), topic.to_owned(), payload));
        }
        Box::pin(async { Ok(()) })
    }
}

struct Plugin {
    tenant: &'static str,
    name: &'static str,
    store: Store,
    origins: Vec<String>,
    grants: Grants,
    events: Arc<Recorded>,
    metrics: Metrics,
    stored_bytes: u64,
}

impl Plugin {
    fn new(tenant: &'static str, name: &'static str, store: &Store) -> Self {
        Self {
            tenant,
            name,
            store: store.clone(),
            origins: Vec::new(),
            grants: Grants::default(),
            events: Arc::new(Recorded::default()),
            metrics: Metrics::new(),
            stored_bytes: 1 << 20,
        }
    }

    /// The state one instance of the plugin carries, in a call of `deadline`.
    fn state(&self, deadline: Duration) -> HostState {
        let context = PluginContext {
            tenant: self.tenant.into(),
            name: self.name.into(),
            config: BTreeMap::from([("greeting".into(), "Moin".into())]),
            secrets: BTreeMap::from([("token".into(), bitbylaw::config::Secret::new("s3cret"))]),
            scope: Scope::new("cap-test", self.tenant, self.name),
            quota: Quota::new("cap-test", self.tenant, self.stored_bytes),
            store: self.store.clone(),
            allowed_origins: self
                .origins
                .iter()
                .map(|o| Origin::parse(o).unwrap())
                .collect::<HashSet<_>>(),
            egress: Egress::new(Duration::from_secs(5), 1024).unwrap(),
            events: self.events.clone(),
            metrics: self.metrics.clone(),
            grants: self.grants.clone(),
        };
        let mut state = HostState::new(Arc::new(context), 64 << 20);
        state.call = CallContext {
            request_id: "req-1".into(),
            deadline: Instant::now() + deadline,
            max_attempts: None,
        };
        state
    }
}

fn memory() -> Store {
    Store::Memory(MemoryStore::new())
}

/// A tenant's plugins share its quota of stored bytes: growth past it is
/// refused as `invalid` and loses nothing; deleting frees room; another
/// tenant's room is its own. On both backends.
async fn kv_growth_stops_at_the_tenant_quota(store: Store) {
    let unique = |name: &str| -> &'static str {
        Box::leak(format!("{name}-{}", uuid::Uuid::new_v4().simple()).into_boxed_str())
    };
    let (tenant, other_tenant) = (unique("quota"), unique("quota-other"));
    let plugin = |name: &'static str| {
        let mut plugin = Plugin::new(tenant, name, &store);
        plugin.stored_bytes = 4096;
        plugin.state(Duration::from_secs(5))
    };
    let (mut notes, mut sync) = (plugin("notes"), plugin("sync"));
    kv::Host::set(&mut notes, "a".into(), vec![1; 2000], None)
        .await
        .unwrap();
    kv::Host::set(&mut sync, "b".into(), vec![2; 1500], None)
        .await
        .unwrap();
    let refused = kv::Host::set(&mut sync, "c".into(), vec![3; 1000], None).await;
    assert!(
        matches!(&refused, Err(WitStoreError::Invalid(message)) if message.contains("quota")),
        "{refused:?}"
    );
    assert_eq!(kv::Host::get(&mut sync, "c".into()).await.unwrap(), None);
    let refused = kv::Host::set_add(&mut sync, "s".into(), vec!["m".repeat(700)]).await;
    assert!(
        matches!(refused, Err(WitStoreError::Invalid(_))),
        "{refused:?}"
    );
    // Shrinking a key always works, and deleting frees its room for others.
    kv::Host::set(&mut notes, "a".into(), vec![1; 10], None)
        .await
        .unwrap();
    kv::Host::set(&mut sync, "c".into(), vec![3; 1000], None)
        .await
        .unwrap();
    assert!(kv::Host::delete(&mut sync, "b".into()).await.unwrap());
    kv::Host::set_add(&mut sync, "s".into(), vec!["m".repeat(700)])
        .await
        .unwrap();
    assert_eq!(kv::Host::incr(&mut sync, "n".into(), 2).await.unwrap(), 2);
    // What was kept is intact.
    assert_eq!(
        kv::Host::get(&mut notes, "a".into()).await.unwrap(),
        Some(vec![1; 10])
    );
    // Another tenant is not charged for this one's data.
    let mut other = Plugin::new(other_tenant, "notes", &store);
    other.stored_bytes = 4096;
    let mut other = other.state(Duration::from_secs(5));
    kv::Host::set(&mut other, "a".into(), vec![1; 4000], None)
        .await
        .unwrap();
    kv::Host::delete(&mut other, "a".into()).await.unwrap();
    if let Store::Redis(_) = &store {
        for tenant in [tenant, other_tenant] {
            bitbylaw_tests::delete_prefix(&format!("cap-test:{{{tenant}}}"));
        }
    }
}

#[tokio::test]
async fn kv_growth_stops_at_the_tenant_quota_memory() {
    kv_growth_stops_at_the_tenant_quota(memory()).await;
}

#[tokio::test]
async fn kv_growth_stops_at_the_tenant_quota_redis() {
    let store = Store::Redis(bitbylaw_tests::redis_target::connect_store().await);
    kv_growth_stops_at_the_tenant_quota(store).await;
}

#[tokio::test]
async fn kv_is_scoped_to_tenant_and_plugin_and_checks_its_arguments() {
    let store = memory();
    let mut a = Plugin::new("firm-a", "notes", &store).state(Duration::from_secs(5));
    let mut other_plugin = Plugin::new("firm-a", "other", &store).state(Duration::from_secs(5));
    let mut other_tenant = Plugin::new("firm-b", "notes", &store).state(Duration::from_secs(5));

    kv::Host::set(&mut a, "k".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        kv::Host::get(&mut a, "k".into()).await.unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(
        kv::Host::get(&mut other_plugin, "k".into()).await.unwrap(),
        None
    );
    assert_eq!(
        kv::Host::get(&mut other_tenant, "k".into()).await.unwrap(),
        None
    );
    assert_eq!(
        store.get("cap-test:{firm-a}:notes:kv:k").await.unwrap(),
        Some(b"v".to_vec()),
        "the key the host built"
    );

    let added = kv::Host::set_add(&mut a, "s".into(), vec!["x".into(), "y".into()])
        .await
        .unwrap();
    assert_eq!(added.len(), 2);
    let again = kv::Host::set_add(&mut a, "s".into(), vec!["y".into(), "z".into()])
        .await
        .unwrap();
    assert_eq!(again, vec!["z".to_owned()], "only the new member");
    assert_eq!(kv::Host::incr(&mut a, "n".into(), 5).await.unwrap(), 5);

    for refused in [
        kv::Host::set(&mut a, String::new(), b"v".to_vec(), None).await,
        kv::Host::set(&mut a, "k".into(), b"v".to_vec(), Some(0)).await,
        kv::Host::set(&mut a, "k".into(), vec![0; 4 * 1024 * 1024 + 1], None).await,
    ] {
        assert!(
            matches!(refused, Err(WitStoreError::Invalid(_))),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn locks_are_bound_to_their_token() {
    let store = memory();
    let mut state = Plugin::new("firm-a", "sync", &store).state(Duration::from_secs(5));
    let token = lock::Host::acquire(&mut state, "job".into(), 10_000)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(
        lock::Host::acquire(&mut state, "job".into(), 10_000)
            .await
            .unwrap(),
        None,
        "held"
    );
    assert!(
        !lock::Host::release(&mut state, "job".into(), "not-the-token".into())
            .await
            .unwrap()
    );
    assert!(
        lock::Host::extend(&mut state, "job".into(), token.clone(), 10_000)
            .await
            .unwrap()
    );
    assert!(
        lock::Host::release(&mut state, "job".into(), token)
            .await
            .unwrap()
    );
    assert!(matches!(
        lock::Host::acquire(&mut state, "job".into(), 0).await,
        Err(WitStoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_rate_limit_wait_never_outlasts_the_call() {
    let store = memory();
    let bucket = rate_limit::Bucket {
        capacity: 1,
        refill_per_second: 0.1,
    };
    // The call has 200 ms left; the refill would take 10 s.
    let mut state = Plugin::new("firm-a", "sync", &store).state(Duration::from_millis(200));
    let first = rate_limit::Host::take(&mut state, "api".into(), bucket, 1, 0)
        .await
        .unwrap();
    assert!(first.allowed);
    let started = Instant::now();
    let second = rate_limit::Host::take(&mut state, "api".into(), bucket, 1, 60_000)
        .await
        .unwrap();
    assert!(!second.allowed);
    assert!(second.retry_after_ms > 9_000, "{}", second.retry_after_ms);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered without waiting for a refill past the deadline"
    );
}

#[tokio::test]
async fn events_go_to_the_bus_under_the_calling_tenant() {
    let store = memory();
    let plugin = Plugin::new("firm-a", "crm", &store);
    let mut state = plugin.state(Duration::from_secs(5));
    events::Host::emit(&mut state, "party.created".into(), b"{}".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        events::Host::emit(&mut state, String::new(), Vec::new()).await,
        Err(WitStoreError::Invalid(_))
    ));
    assert!(matches!(
        events::Host::emit(&mut state, "t".into(), vec![0; 1024 * 1024 + 1]).await,
        Err(WitStoreError::Invalid(_))
    ));
    let emitted = plugin.events.0.lock().unwrap().clone();
    assert_eq!(
        emitted,
        vec![("firm-a".into(), "party.created".into(), b"{}".to_vec())]
    );
}

#[tokio::test]
async fn config_and_secrets_are_the_plugins_own() {
    let store = memory();
    let mut state = Plugin::new("firm-a", "hello", &store).state(Duration::from_secs(5));
    assert_eq!(
        config::Host::get(&mut state, "greeting".into()),
        Some("Moin".into())
    );
    assert_eq!(config::Host::get(&mut state, "missing".into()), None);
    assert_eq!(
        secrets::Host::get(&mut state, "token".into()),
        Some("s3cret".into())
    );
    assert_eq!(secrets::Host::get(&mut state, "other".into()), None);
}

#[tokio::test]
async fn http_goes_only_to_allowed_origins() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store = memory();
    let mut plugin = Plugin::new("firm-a", "caller", &store);
    plugin.origins = vec![format!("http://{addr}")];
    let mut state = plugin.state(Duration::from_secs(5));
    let request = |url: String| http::Request {
        method: "GET".into(),
        url,
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
    };
    let answer = http::Host::send(&mut state, request(format!("http://{addr}/ping")))
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body), (200, b"pong".to_vec()));

    let refused = http::Host::send(&mut state, request("http://127.0.0.1:9/ping".into())).await;
    assert!(
        matches!(refused, Err(http::Error::Forbidden(_))),
        "{refused:?}"
    );
    assert!(
        plugin
            .metrics
            .render()
            .unwrap()
            .contains("bitbylaw_egress_refused_total{tenant=\"firm-a\",plugin=\"caller\"} 1")
    );
    let bad = http::Host::send(&mut state, request("not a url".into())).await;
    assert!(
        matches!(bad, Err(http::Error::InvalidRequest(_))),
        "{bad:?}"
    );
}

/// The Advoware kind: a plugin without the grant gets `not-configured`; with
/// it, the call is signed in against the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_account_serves_only_the_plugins_granted_it() {
    let sim = Advoware::start_default().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("key"), &sim.account().api_key).unwrap();
    std::fs::write(secrets.path().join("password"), &sim.account().password).unwrap();
    let account = sim.account();
    let table: toml::Table = format!(
        r#"
api_url = "{url}"
security_gateway = "{url}"
app_id = "{app_id}"
kanzlei = "{kanzlei}"
database = "{database}"
user = "{user}"
api_key = {{ file = "key" }}
password = {{ file = "password" }}
"#,
        url = sim.base_url(),
        app_id = account.app_id,
        kanzlei = account.kanzlei,
        database = account.database,
        user = account.user,
    )
    .parse()
    .unwrap();
    let settings = bitbylaw_advoware::Advoware.parse(table).unwrap();
    let store = Store::Redis(bitbylaw_tests::redis_target::connect_store().await);
    let prefix = format!("cap-test-{}", uuid::Uuid::new_v4().simple());
    let metrics = Metrics::new();
    let egress = Egress::new(Duration::from_secs(5), 1 << 20).unwrap();
    let client = settings
        .open(&OpenContext {
            tenant: "firm-a",
            account: "main",
            base_dir: secrets.path(),
            store: &store,
            key_prefix: &prefix,
            egress: &egress,
            metrics: &metrics,
        })
        .unwrap();

    let request = || advoware::Request {
        method: "GET".into(),
        path: "employees".into(),
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
    };
    let ungranted = Plugin::new("firm-a", "other", &store);
    let mut state = ungranted.state(Duration::from_secs(5));
    let mut call = bitbylaw_advoware::AdvowareCall(state.upstream_call());
    let refused = advoware::Host::send(&mut call, request()).await;
    assert!(
        matches!(&refused, Err(advoware::Error::NotConfigured(m)) if m.contains("may not use Advoware")),
        "{refused:?}"
    );
    assert_eq!(sim.token_requests(), 0);

    let mut granted = Plugin::new("firm-a", "proxy", &store);
    granted.grants.grant("advoware", "main", client).unwrap();
    let mut state = granted.state(Duration::from_secs(5));
    let mut call = bitbylaw_advoware::AdvowareCall(state.upstream_call());
    let answer = advoware::Host::send(&mut call, request()).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(sim.token_requests(), 1);
    let keys =
        bitbylaw_tests::keys_with_prefix(&format!("{prefix}:{{firm-a}}:@advoware:kv:token:main"));
    assert_eq!(
        keys.len(),
        1,
        "the token is cached under the tenant, kind and account"
    );
    bitbylaw_tests::delete_prefix(&prefix);
    assert!(metrics.render().unwrap().contains(
        "bitbylaw_upstream_requests_total{tenant=\"firm-a\",kind=\"advoware\",account=\"main\",outcome=\"2xx\"} 1"
    ));
}

/// The `google` kind opened straight from its settings, its interface called
/// without Wasm: refused for a plugin without the grant, served (one token,
/// one call counted by method) for the plugin granted the account.
#[tokio::test]
async fn a_google_account_serves_only_the_plugins_granted_it() {
    use bitbylaw_bindings::google_calendar;
    use bitbylaw_tests::simulators::google::{Google, ServiceAccount};

    let account = ServiceAccount::generate("sync@bitbylaw-test.iam.gserviceaccount.com");
    let sim = Google::start(std::slice::from_ref(&account)).await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("key.json"),
        account.key_json(&sim.token_uri()),
    )
    .unwrap();
    let table: toml::Table = format!(
        "service_account_key = {{ file = \"key.json\" }}\napi_base = \"{}\"\n",
        sim.api_base()
    )
    .parse()
    .unwrap();
    let settings = bitbylaw_google::Google.parse(table).unwrap();
    let store = memory();
    let metrics = Metrics::new();
    let egress = Egress::new(Duration::from_secs(5), 1 << 20).unwrap();
    let client = settings
        .open(&OpenContext {
            tenant: "firm-a",
            account: "workspace",
            base_dir: secrets.path(),
            store: &store,
            key_prefix: "cap-test",
            egress: &egress,
            metrics: &metrics,
        })
        .unwrap();

    let mailbox = "anna@kanzlei.example".to_owned();
    let ungranted = Plugin::new("firm-a", "other", &store);
    let mut state = ungranted.state(Duration::from_secs(5));
    let mut call = bitbylaw_google::GoogleCall(state.upstream_call());
    let refused = google_calendar::Host::list_calendars(&mut call, mailbox.clone()).await;
    assert!(
        matches!(&refused, Err(google_calendar::Error::NotConfigured(m)) if m.contains("may not use Google Calendar")),
        "{refused:?}"
    );
    assert_eq!(sim.token_requests_total(), 0);

    let mut granted = Plugin::new("firm-a", "calendar-sync", &store);
    granted.grants.grant("google", "workspace", client).unwrap();
    let mut state = granted.state(Duration::from_secs(5));
    let mut call = bitbylaw_google::GoogleCall(state.upstream_call());
    let calendars = google_calendar::Host::list_calendars(&mut call, mailbox.clone())
        .await
        .unwrap();
    assert_eq!(calendars[0].id.as_deref(), Some(mailbox.as_str()));
    let empty = google_calendar::Host::list_calendars(&mut call, String::new()).await;
    assert!(
        matches!(empty, Err(google_calendar::Error::Invalid(_))),
        "a call needs a mailbox: {empty:?}"
    );
    assert_eq!(sim.token_requests(&mailbox), 1);
    assert!(metrics.render().unwrap().contains(
        "bitbylaw_upstream_calls_total{tenant=\"firm-a\",kind=\"google\",account=\"workspace\",method=\"calendarList.list\",outcome=\"ok\"} 1"
    ));
}

#[tokio::test]
async fn an_espocrm_account_signs_for_the_plugins_granted_it_and_checks_their_webhooks() {
    use bitbylaw_bindings::espocrm::{self, Request};
    use bitbylaw_tests::simulators::espocrm::{EspoCrm, webhook_signature};

    let sim = EspoCrm::start_default().await;
    let id = sim.user_create("CBeteiligte", serde_json::json!({ "name": "Hans Müller" }));
    let secrets = tempfile::tempdir().unwrap();
    let account = sim.account();
    std::fs::write(secrets.path().join("key"), &account.api_key).unwrap();
    std::fs::write(
        secrets.path().join("secret"),
        account.secret_key.as_ref().unwrap(),
    )
    .unwrap();
    std::fs::write(secrets.path().join("hook"), "hook-secret-1").unwrap();
    let table: toml::Table = format!(
        "base_url = \"{}\"\napi_key = {{ file = \"key\" }}\nsecret_key = {{ file = \"secret\" }}\n[webhooks.\"CBeteiligte.create\"]\nid = \"hook-1\"\nsecret = {{ file = \"hook\" }}\n",
        sim.base_url()
    )
    .parse()
    .unwrap();
    let settings = bitbylaw_espocrm::EspoCrm.parse(table).unwrap();
    let store = memory();
    let metrics = Metrics::new();
    let egress = Egress::new(Duration::from_secs(5), 1 << 20).unwrap();
    let client = settings
        .open(&OpenContext {
            tenant: "firm-a",
            account: "vmh",
            base_dir: secrets.path(),
            store: &store,
            key_prefix: "cap-test",
            egress: &egress,
            metrics: &metrics,
        })
        .unwrap();
    let get = |path: &str| Request {
        method: "GET".into(),
        path: path.into(),
        query: vec![("select".into(), "name".into())],
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
    };
    let body = br#"[{"id":"abc123"}]"#.to_vec();
    let signed = vec![(
        "Signature".to_owned(),
        webhook_signature("hook-1", "hook-secret-1", &body),
    )];

    let ungranted = Plugin::new("firm-a", "other", &store);
    let mut state = ungranted.state(Duration::from_secs(5));
    let mut call = bitbylaw_espocrm::EspoCrmCall(state.upstream_call());
    let refused = espocrm::Host::send(&mut call, get(&format!("CBeteiligte/{id}"))).await;
    assert!(
        matches!(&refused, Err(espocrm::Error::NotConfigured(m)) if m.contains("may not use EspoCRM")),
        "{refused:?}"
    );
    let refused = espocrm::Host::verify_webhook(
        &mut call,
        "CBeteiligte.create".into(),
        signed.clone(),
        body.clone(),
    )
    .await;
    assert!(
        matches!(refused, Err(espocrm::SignatureError::NotConfigured(_))),
        "{refused:?}"
    );
    assert!(sim.api_requests().is_empty());

    let mut granted = Plugin::new("firm-a", "vmh-webhooks", &store);
    granted.grants.grant("espocrm", "vmh", client).unwrap();
    let mut state = granted.state(Duration::from_secs(5));
    let mut call = bitbylaw_espocrm::EspoCrmCall(state.upstream_call());
    // Signed with the account's secret key; the simulator checks it with its own HMAC.
    let answer = espocrm::Host::send(&mut call, get(&format!("CBeteiligte/{id}")))
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let sent = sim.api_requests().pop().unwrap();
    assert!(sent.headers.contains_key("x-hmac-authorization"));
    assert!(
        !sent.headers.contains_key("x-api-key"),
        "the key travels only inside the signature"
    );
    assert_eq!(sent.query.as_deref(), Some("select=name"));
    // Paths stay below the API; the plugin cannot set the auth headers.
    for path in [
        "../Webhook",
        "CBeteiligte/%2e%2e/x",
        "http://evil.example/x",
    ] {
        let refused = espocrm::Host::send(&mut call, get(path)).await;
        assert!(
            matches!(refused, Err(espocrm::Error::InvalidRequest(_))),
            "{path}: {refused:?}"
        );
    }
    let mut forged = get("CBeteiligte");
    forged.headers.push(("X-Api-Key".into(), "other".into()));
    let refused = espocrm::Host::send(&mut call, forged).await;
    assert!(
        matches!(&refused, Err(espocrm::Error::InvalidRequest(m)) if m.contains("set by the host")),
        "{refused:?}"
    );

    // Webhooks: the configured one verifies; another name, secret or body does not.
    espocrm::Host::verify_webhook(
        &mut call,
        "CBeteiligte.create".into(),
        signed.clone(),
        body.clone(),
    )
    .await
    .unwrap();
    let tampered = espocrm::Host::verify_webhook(
        &mut call,
        "CBeteiligte.create".into(),
        signed.clone(),
        b"[]".to_vec(),
    )
    .await;
    assert!(
        matches!(tampered, Err(espocrm::SignatureError::Mismatch(_))),
        "{tampered:?}"
    );
    let unknown =
        espocrm::Host::verify_webhook(&mut call, "CBeteiligte.update".into(), signed, body).await;
    assert!(
        matches!(&unknown, Err(espocrm::SignatureError::NotConfigured(m)) if m.contains("CBeteiligte.create")),
        "the message names the webhooks there are: {unknown:?}"
    );
    assert!(metrics.render().unwrap().contains(
        "bitbylaw_upstream_requests_total{tenant=\"firm-a\",kind=\"espocrm\",account=\"vmh\",outcome=\"2xx\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3cx_account_signs_in_once_keeps_its_budget_and_stays_inside_its_apis() {
    use bitbylaw_bindings::threecx::{self, Request};
    use bitbylaw_bindings::types::RestError;
    use bitbylaw_tests::simulators::threecx::ThreeCx;

    let sim = ThreeCx::start_default().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), sim.account().client_secret).unwrap();
    let open = |per_minute: u32, store: &Store| {
        let table: toml::Table = format!(
            "url = \"{}\"\nclient_id = \"{}\"\nclient_secret = {{ file = \"secret\" }}\nrequests_per_minute = {per_minute}\n",
            sim.base_url(),
            sim.account().client_id
        )
        .parse()
        .unwrap();
        let settings = bitbylaw_threecx::ThreeCx.parse(table).unwrap();
        settings
            .open(&OpenContext {
                tenant: "firm-a",
                account: "pbx",
                base_dir: secrets.path(),
                store,
                key_prefix: "cap-test",
                egress: &Egress::new(Duration::from_secs(5), 1 << 20).unwrap(),
                metrics: &Metrics::new(),
            })
            .unwrap()
    };
    let get = |path: &str| Request {
        method: "GET".into(),
        path: path.into(),
        query: vec![("$top".into(), "5".into())],
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
    };
    let store = memory();
    let mut plugin = Plugin::new("firm-a", "threecx", &store);
    plugin
        .grants
        .grant("3cx", "pbx", open(600, &store))
        .unwrap();

    // Twenty calls at once: one token for all of them.
    let calls = (0..20).map(|_| {
        let mut state = plugin.state(Duration::from_secs(5));
        async move {
            let mut call = bitbylaw_threecx::ThreeCxCall(state.upstream_call());
            threecx::Host::send(&mut call, get("xapi/v1/Recordings")).await
        }
    });
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap().status, 200);
    }
    assert_eq!(sim.token_requests(), 1);

    let mut state = plugin.state(Duration::from_secs(5));
    let mut call = bitbylaw_threecx::ThreeCxCall(state.upstream_call());
    // A token 3CX no longer takes: one new token, the call goes through.
    sim.revoke_tokens();
    let answer = threecx::Host::send(&mut call, get("xapi/v1/Recordings"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(sim.token_requests(), 2);
    // Only the two APIs, never the token endpoint or a path out.
    for path in [
        "connect/token",
        "webclient/api",
        "xapi/v1/../../connect/token",
        "http://evil.example/xapi/v1/x",
    ] {
        let refused = threecx::Host::send(&mut call, get(path)).await;
        assert!(
            matches!(refused, Err(RestError::InvalidRequest(_))),
            "{path}: {refused:?}"
        );
    }
    let mut forged = get("xapi/v1/Recordings");
    forged
        .headers
        .push(("Authorization".into(), "Bearer mine".into()));
    assert!(matches!(
        threecx::Host::send(&mut call, forged).await,
        Err(RestError::InvalidRequest(_))
    ));
    assert!(
        sim.api_requests()
            .iter()
            .all(|(_, path)| path.starts_with("/xapi/v1/")),
        "{:?}",
        sim.api_requests()
    );

    // A budget of 2 a minute: the third call has no room within its deadline.
    let tight = memory();
    let mut budgeted = Plugin::new("firm-a", "threecx", &tight);
    budgeted
        .grants
        .grant("3cx", "pbx", open(2, &tight))
        .unwrap();
    let mut state = budgeted.state(Duration::from_secs(1));
    let mut call = bitbylaw_threecx::ThreeCxCall(state.upstream_call());
    for _ in 0..2 {
        assert_eq!(
            threecx::Host::send(&mut call, get("xapi/v1/Recordings"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let refused = threecx::Host::send(&mut call, get("xapi/v1/Recordings")).await;
    assert!(
        matches!(&refused, Err(RestError::Unavailable(m)) if m.contains("2 requests a minute")),
        "{refused:?}"
    );

    // A plugin the tenant did not grant the account.
    let other = Plugin::new("firm-a", "other", &store);
    let mut state = other.state(Duration::from_secs(5));
    let mut call = bitbylaw_threecx::ThreeCxCall(state.upstream_call());
    let refused = threecx::Host::send(&mut call, get("xapi/v1/Recordings")).await;
    assert!(
        matches!(refused, Err(RestError::NotConfigured(_))),
        "{refused:?}"
    );
}
