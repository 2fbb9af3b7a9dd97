//! The Kong file (`deploy/kong/kong.yaml`) as Kong 3.x reads it: settings that
//! keep one tenant from taking the instances out of rotation for all, and the
//! ones that keep keys, counts and request ids honest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use yaml_rust2::{Yaml, YamlLoader};

fn kong_file() -> (String, Yaml) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kong/kong.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut documents = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(documents.len(), 1);
    (text, documents.remove(0))
}

fn plugins<'a>(holder: &'a Yaml, name: &str) -> Vec<&'a Yaml> {
    holder["plugins"]
        .as_vec()
        .map(|plugins| {
            plugins
                .iter()
                .filter(|p| p["name"].as_str() == Some(name))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn passive_health_checks_ignore_the_statuses_one_tenant_causes() {
    let (_, kong) = kong_file();
    let upstream = &kong["upstreams"][0];
    let passive = &upstream["healthchecks"]["passive"]["unhealthy"];
    assert_eq!(
        passive["http_failures"].as_i64(),
        Some(0),
        "429/500/503/504 come from one tenant's limits, failures or deadlines: {passive:?}"
    );
    assert!(passive["tcp_failures"].as_i64().unwrap() > 0);
    let active = &upstream["healthchecks"]["active"]["unhealthy"]["http_statuses"];
    assert!(
        !active.as_vec().unwrap().contains(&Yaml::Integer(429)),
        "{active:?}"
    );
}

#[test]
fn rate_limits_are_shared_by_kong_nodes_and_complete_per_consumer() {
    let (_, kong) = kong_file();
    let service = &kong["services"][0];
    let mut limits: Vec<&Yaml> = plugins(service, "rate-limiting");
    let consumers = kong["consumers"].as_vec().unwrap();
    let consumer_limits: Vec<&Yaml> = consumers
        .iter()
        .flat_map(|c| plugins(c, "rate-limiting"))
        .collect();
    assert!(!consumer_limits.is_empty());
    limits.extend(&consumer_limits);
    for limit in &limits {
        let config = &limit["config"];
        assert_ne!(
            config["policy"].as_str(),
            Some("local"),
            "counted per node: {config:?}"
        );
        assert!(config["redis"]["host"].as_str().is_some(), "{config:?}");
    }
    // A consumer's plugin replaces the service's: it must state every window the service does.
    let service_config = &plugins(service, "rate-limiting")[0]["config"];
    let service_windows: Vec<&str> = ["second", "minute", "hour", "day"]
        .into_iter()
        .filter(|window| !service_config[*window].is_badvalue())
        .collect();
    assert!(!service_windows.is_empty());
    for limit in consumer_limits {
        for window in &service_windows {
            assert!(
                !limit["config"][*window].is_badvalue(),
                "consumer limit without `{window}`: {limit:?}"
            );
        }
    }
}

#[test]
fn routes_are_https_only() {
    let (_, kong) = kong_file();
    for route in kong["services"][0]["routes"].as_vec().unwrap() {
        assert_eq!(
            route["protocols"],
            Yaml::Array(vec![Yaml::String("https".into())]),
            "{route:?}"
        );
    }
}

#[test]
fn keys_from_the_environment_are_quoted() {
    let (text, _) = kong_file();
    let substituted: Vec<&str> = text.lines().filter(|l| l.contains("${{")).collect();
    assert!(!substituted.is_empty());
    for line in substituted {
        let value = line.split_once(": ").unwrap().1.trim();
        assert!(
            value.starts_with('\'') && value.ends_with('\''),
            "decK puts the key into the YAML as it is: {line}"
        );
    }
}

#[test]
fn a_client_cannot_choose_its_request_id() {
    let (text, kong) = kong_file();
    let global = plugins(&kong, "pre-function");
    assert_eq!(
        global.len(),
        1,
        "a global plugin: only those run in the rewrite phase"
    );
    let rewrite = global[0]["config"]["rewrite"].as_vec().unwrap();
    assert!(
        rewrite.iter().any(|code| code
            .as_str()
            .unwrap()
            .contains("clear_header('Kong-Request-ID')")),
        "{rewrite:?}"
    );
    let correlation = plugins(&kong["services"][0], "correlation-id");
    assert_eq!(
        correlation[0]["config"]["header_name"].as_str(),
        Some("Kong-Request-ID")
    );
    assert!(
        text.contains("Kong Gateway 3.6 or later"),
        "the version it needs is stated"
    );
}

/// Every path Kong routes leads to routes the demo's plugins declare (a path
/// that leads nowhere gives the firm 404s from the host it cannot explain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kong_route_leads_to_a_route_a_plugin_serves() {
    use bitbylaw_tests::{Backend, TestHost};
    let (_, kong) = kong_file();
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.advoware-proxy]\ncomponent = \"{component:advoware-proxy}\"\n\
             [plugins.calendar-sync]\ncomponent = \"{component:calendar-sync}\"\n\
             [plugins.vmh-webhooks]\ncomponent = \"{component:vmh-webhooks}\"\n\
             [plugins.vermieterhelden]\ncomponent = \"{component:vermieterhelden}\"\n\
             [plugins.threecx]\ncomponent = \"{component:threecx}\"\n",
        )
        .start()
        .await;
    let declared: Vec<String> = app
        .running("firm-a")
        .routes
        .describe()
        .into_iter()
        .map(|(_, pattern, _)| pattern)
        .collect();
    assert!(declared.len() > 3, "{declared:?}");
    for route in kong["services"][0]["routes"].as_vec().unwrap() {
        for path in route["paths"].as_vec().unwrap() {
            let path = path.as_str().unwrap().trim_end_matches('/');
            assert!(
                declared
                    .iter()
                    .any(|p| p == path || p.starts_with(&format!("{path}/"))),
                "Kong routes {path} but no plugin serves below it: {declared:?}"
            );
        }
    }
}

/// CORS is for the origins a firm names: none by default, never `*`.
#[test]
fn cors_is_off_unless_a_firm_names_its_origins() {
    let (_, kong) = kong_file();
    let mut holders = vec![&kong, &kong["services"][0]];
    holders.extend(kong["services"][0]["routes"].as_vec().unwrap());
    for holder in holders {
        for cors in plugins(holder, "cors") {
            let origins = cors["config"]["origins"].as_vec();
            assert!(
                origins.is_some_and(|o| !o.is_empty() && !o.contains(&Yaml::String("*".into()))),
                "cors without named origins answers `*`: {cors:?}"
            );
        }
    }
}
