//! A tenant running `vmh-webhooks` between the EspoCRM and Advoware
//! simulators, for the webhook tests and the benchmark. The webhooks are
//! registered in the EspoCRM simulator with their URL on the host (the key in
//! the query, as EspoCRM must send it) and in the tenant's EspoCRM account
//! with the same ids and secrets.

use std::time::Duration;

use serde_json::Value;

use crate::deployment::Deployment;
use crate::simulators::advoware::Advoware;
use crate::simulators::espocrm::{self, EspoCrm, Outcome};
use crate::{TestHost, wait_for};

/// How long the webhook tests wait for a sync to show.
pub const WAIT: Duration = Duration::from_secs(20);

/// The admin API's token when [`VmhOptions::admin`] is set.
pub const ADMIN_TOKEN: &str = "vmh-admin-token";

pub const API_KEY: &str = "firm-a-key";

pub const ACTIONS: [&str; 3] = ["create", "update", "delete"];

/// The webhook of `action` as the simulator and the tenant both know it;
/// `create`'s is the reference's test vector (`webhookId456`, `secretKey123`).
pub fn webhook_id(action: &str) -> String {
    match action {
        "create" => "webhookId456".into(),
        _ => format!("wh-{action}-4f2a9c"),
    }
}

pub fn webhook_secret(action: &str) -> String {
    match action {
        "create" => "secretKey123".into(),
        _ => format!("{action}-secret-7d1e0b93a5c4"),
    }
}

#[derive(Clone)]
pub struct VmhOptions {
    /// Lines for `[plugins.vmh-webhooks.config]`.
    pub config: String,
    /// Lines for each `[plugins.vmh-webhooks.subscriptions."vmh.beteiligte.<action>"]`.
    pub subscription: String,
    /// Sign API requests (`secret_key`) instead of sending the key.
    pub hmac: bool,
    pub key_prefix: Option<String>,
    /// Register the three webhooks in the EspoCRM simulator, pointing at the host.
    pub register_webhooks: bool,
    /// More host settings, after [`HOST_TOML`].
    pub host: String,
    /// Turn the admin API on with [`ADMIN_TOKEN`] (for the dead letters).
    pub admin: bool,
}

impl Default for VmhOptions {
    fn default() -> Self {
        Self {
            config: String::new(),
            subscription: "backoff_base_ms = 100\nbackoff_jitter = 0.0".into(),
            hmac: true,
            key_prefix: None,
            register_webhooks: true,
            host: String::new(),
            admin: false,
        }
    }
}

pub struct VmhRig {
    pub espocrm: EspoCrm,
    pub advoware: Advoware,
    pub host: TestHost,
    pub options: VmhOptions,
    /// The tenant and host settings every instance of this rig shares.
    pub deployment: Deployment,
}

/// Retries come back quickly in tests.
pub const HOST_TOML: &str = "[events]\nretry_poll_ms = 20\n";

impl VmhRig {
    pub async fn start(options: VmhOptions) -> Self {
        // An API user has one authentication method: HMAC, or its key alone.
        let espocrm = if options.hmac {
            EspoCrm::start_default().await
        } else {
            EspoCrm::start(crate::simulators::espocrm::EspoAccount::demo()).await
        };
        let advoware = Advoware::start_default().await;
        let mut deployment = Deployment::new("firm-a", options.key_prefix.as_deref());
        deployment.tenant_toml = tenant(&espocrm, &advoware, deployment.files(), &options);
        deployment.host_toml = format!("{HOST_TOML}{}", options.host);
        if options.admin {
            let token = deployment.files().join("admin-token");
            std::fs::write(&token, ADMIN_TOKEN).unwrap();
            deployment.host_toml.push_str(&format!(
                "\n[admin]\ntoken = {{ file = \"{}\" }}\n",
                token.display()
            ));
        }
        let host = deployment.start().await;
        if options.register_webhooks {
            for action in ACTIONS {
                espocrm.register_webhook_with(
                    &format!("CBeteiligte.{action}"),
                    &Self::webhook_url(&host, action),
                    &webhook_id(action),
                    &webhook_secret(action),
                );
            }
        }
        Self {
            espocrm,
            advoware,
            host,
            options,
            deployment,
        }
    }

    /// A second host instance of the same deployment (same store prefix).
    pub async fn another_instance(&self) -> TestHost {
        self.deployment.start().await
    }

    /// Where EspoCRM posts `action`'s webhooks: the key in the query.
    pub fn webhook_url(host: &TestHost, action: &str) -> String {
        host.url(&format!(
            "/vmh/webhook/beteiligte/{action}?apikey={API_KEY}"
        ))
    }

    /// Posts `body` to `action`'s route on `host`, signed like EspoCRM when
    /// `signed`: status and answer.
    pub async fn post_to(host: &TestHost, action: &str, body: &[u8], signed: bool) -> (u16, Value) {
        let mut request = host
            .client
            .post(Self::webhook_url(host, action))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if signed {
            let (id, secret) = (webhook_id(action), webhook_secret(action));
            request = request
                .header("Signature", espocrm::webhook_signature(&id, &secret, body))
                .header(
                    "X-Signature",
                    espocrm::legacy_webhook_signature(&id, &secret, body),
                );
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, action: &str, body: &[u8], signed: bool) -> (u16, Value) {
        Self::post_to(&self.host, action, body, signed).await
    }

    /// `GET /vmh/beteiligte/{id}`: status and what the plugin knows.
    pub async fn lookup(&self, id: &str) -> (u16, Value) {
        let response = self
            .host
            .get(&format!("/vmh/beteiligte/{id}"), API_KEY)
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Whether `id`'s sync of `action` has finished (the id is no longer pending).
    pub async fn settled(&self, id: &str, action: &str) -> bool {
        let (status, known) = self.lookup(id).await;
        status == 404 || known["pending"][action] == false
    }

    /// The ids announced on `vmh.beteiligte.<action>`, in order: the topic's
    /// stream as the host wrote it to Redis.
    pub fn announced(&self, action: &str) -> Vec<String> {
        let stream = format!(
            "{}:{{firm-a}}:ev:topic:vmh.beteiligte.{action}",
            self.host.prefix
        );
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query(&mut crate::redis_connection())
            .unwrap();
        reply
            .ids
            .iter()
            .map(|entry| {
                let payload: Vec<u8> = redis::from_redis_value_ref(&entry.map["payload"]).unwrap();
                let payload: Value = serde_json::from_slice(&payload).unwrap();
                payload["entity_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Runs EspoCRM's delivery job once; every batch must have been taken (200).
    pub async fn deliver_ok(&self) {
        let report = self.espocrm.deliver().await;
        assert!(!report.deliveries.is_empty(), "nothing was queued");
        for delivery in &report.deliveries {
            assert_eq!(delivery.status, Some(200), "{delivery:?}");
            assert_eq!(delivery.outcome, Outcome::Delivered);
        }
    }

    /// Waits until `id`'s sync of `action` has finished.
    pub async fn wait_settled(&self, id: &str, action: &str) {
        wait_for(WAIT, || async {
            self.settled(id, action).await.then_some(())
        })
        .await;
    }

    /// Waits for `id`'s one party to pass `check` (two parties fail the test).
    pub async fn one_party(&self, id: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(WAIT, || async {
            let parties = self.parties_of(id);
            assert!(
                parties.len() <= 1,
                "two parties for one record: {parties:?}"
            );
            parties.into_iter().next().filter(|p| check(p))
        })
        .await
    }

    /// Waits for at least `count` dead letters (needs [`VmhOptions::admin`]).
    pub async fn dead_letters(&self, count: usize) -> Vec<Value> {
        wait_for(WAIT, || async {
            let letters = self
                .host
                .admin(
                    reqwest::Method::GET,
                    "/admin/tenants/firm-a/dead-letters",
                    ADMIN_TOKEN,
                )
                .await;
            letters["dead_letters"]
                .as_array()
                .filter(|l| l.len() >= count)
                .cloned()
        })
        .await
    }

    /// The Advoware parties that carry EspoCRM id `id`.
    pub fn parties_of(&self, id: &str) -> Vec<Value> {
        self.advoware
            .parties()
            .into_iter()
            .filter(|p| p["externeId"] == id)
            .collect()
    }
}

fn tenant(
    espocrm: &EspoCrm,
    advoware: &Advoware,
    files: &std::path::Path,
    options: &VmhOptions,
) -> String {
    std::fs::write(files.join("api.key"), API_KEY).unwrap();
    let mut toml = format!(
        "api_keys = [{{ file = \"{}\" }}]\n{}\n{}",
        files.join("api.key").display(),
        advoware.upstream_toml("advoware", files),
        espocrm.upstream_toml("vmh", files, options.hmac)
    );
    for action in ACTIONS {
        std::fs::write(files.join(format!("wh-{action}")), webhook_secret(action)).unwrap();
        toml.push_str(&format!(
            "[upstreams.vmh.webhooks.\"CBeteiligte.{action}\"]\nid = \"{}\"\nsecret = {{ file = \"{}/wh-{action}\" }}\n",
            webhook_id(action),
            files.display()
        ));
    }
    toml.push_str("[plugins.vmh-webhooks]\ncomponent = \"{component:vmh-webhooks}\"\nupstreams = [\"advoware\", \"vmh\"]\n");
    for action in ACTIONS {
        toml.push_str(&format!(
            "[plugins.vmh-webhooks.subscriptions.\"vmh.beteiligte.{action}\"]\n{}\n",
            options.subscription
        ));
    }
    toml.push_str(&format!(
        "[plugins.vmh-webhooks.config]\n{}\n",
        options.config
    ));
    toml
}
