//! The upstream simulators as a program, for the demo and for trying plugins by hand.
//!
//! `simulators [--advoware 127.0.0.1:9471] [--google 127.0.0.1:9472 --google-key <file>]
//! [--espocrm 127.0.0.1:9473 [--espocrm-webhooks <url with {action}>]] [--threecx 127.0.0.1:9474]`
//! runs Advoware (configurator, security gateway, REST API with demo data)
//! and, when asked, Google Calendar (token endpoint and Calendar API) and
//! EspoCRM (REST API with demo data, webhooks), until
//! Ctrl-C. The Advoware account is the simulator's default one;
//! `deploy/demo` is configured for it. Google's service-account key is made
//! at start and written to `--google-key` (its `token_uri` points here).
//! EspoCRM's account is its simulator's default one; with
//! `--espocrm-webhooks` its `CBeteiligte` webhooks post there (`{action}`
//! replaced by create, update, delete), signed with the demo's secrets, every
//! few seconds (EspoCRM's job runs every 5 minutes); its demo records are
//! made after the webhooks, so their creates are delivered too. 3CX's
//! account is its simulator's default one (client `bitbylaw`, secret
//! `3cx-demo-secret`), with extensions 100 to 102.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, TOKEN_LIFETIME};
use bitbylaw_tests::simulators::espocrm::{EspoAccount, EspoCrm};
use bitbylaw_tests::simulators::google::{Google, ServiceAccount};
use bitbylaw_tests::simulators::threecx::{ThreeCx, ThreeCxAccount};

const USAGE: &str = "usage: simulators [--advoware <address:port>] \
    [--google <address:port> --google-key <file>] \
    [--espocrm <address:port> [--espocrm-webhooks <url with {action}>]] \
    [--threecx <address:port>]";

/// How often the demo's EspoCRM delivers webhooks: the real job's 5 minutes
/// would leave the demo waiting.
const ESPOCRM_DELIVERY_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

fn address(flag: &str, text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| {
        eprintln!("{flag} `{text}`: {e}");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() {
    let mut advoware_addr: SocketAddr = "127.0.0.1:9471".parse().unwrap();
    let mut google_addr: Option<SocketAddr> = None;
    let mut google_key: Option<PathBuf> = None;
    let mut espocrm_addr: Option<SocketAddr> = None;
    let mut espocrm_webhooks: Option<String> = None;
    let mut threecx_addr: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--advoware", Some(addr)) => advoware_addr = address("--advoware", &addr),
            ("--google", Some(addr)) => google_addr = Some(address("--google", &addr)),
            ("--google-key", Some(file)) => google_key = Some(file.into()),
            ("--espocrm", Some(addr)) => espocrm_addr = Some(address("--espocrm", &addr)),
            ("--espocrm-webhooks", Some(url)) => espocrm_webhooks = Some(url),
            ("--threecx", Some(addr)) => threecx_addr = Some(address("--threecx", &addr)),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    // Tokens live about 55 minutes, as Advoware's do.
    let advoware = Advoware::start_on(advoware_addr, Account::default(), TOKEN_LIFETIME)
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on {advoware_addr}: {e}");
            std::process::exit(1)
        });
    advoware.seed_demo_data();
    println!(
        "Advoware simulator on {} (API {}, account: Kanzlei {}, user {})",
        advoware.base_url(),
        advoware.api_base(),
        advoware.account().kanzlei,
        advoware.account().user
    );
    let _google = match (google_addr, google_key) {
        (Some(addr), Some(key_file)) => {
            let account =
                ServiceAccount::generate("demo-sync@bitbylaw-demo.iam.gserviceaccount.com");
            let google = Google::start_on(addr, std::slice::from_ref(&account))
                .await
                .unwrap_or_else(|e| {
                    eprintln!("cannot listen on {addr}: {e}");
                    std::process::exit(1)
                });
            std::fs::write(&key_file, account.key_json(&google.token_uri())).unwrap_or_else(|e| {
                eprintln!("cannot write {}: {e}", key_file.display());
                std::process::exit(1)
            });
            println!(
                "Google Calendar simulator on {} (key: {})",
                google.api_base(),
                key_file.display()
            );
            Some(google)
        }
        (None, None) => None,
        _ => {
            eprintln!("--google and --google-key go together\n{USAGE}");
            std::process::exit(2);
        }
    };
    let _espocrm = match espocrm_addr {
        Some(addr) => {
            let espocrm = EspoCrm::start_on(addr, EspoAccount::demo())
                .await
                .unwrap_or_else(|e| {
                    eprintln!("cannot listen on {addr}: {e}");
                    std::process::exit(1)
                });
            if let Some(url) = &espocrm_webhooks {
                espocrm.register_demo_webhooks(url);
                println!("EspoCRM webhooks to {url}");
            }
            espocrm.seed_demo_data();
            espocrm.start_delivery_every(ESPOCRM_DELIVERY_PERIOD);
            println!(
                "EspoCRM simulator on {} (API {}, API key {}, webhooks every {} s)",
                espocrm.base_url(),
                espocrm.api_base(),
                espocrm.account().api_key,
                ESPOCRM_DELIVERY_PERIOD.as_secs()
            );
            Some(espocrm)
        }
        None => None,
    };
    let _threecx = match threecx_addr {
        Some(addr) => {
            let pbx = ThreeCx::start_on(addr, ThreeCxAccount::default())
                .await
                .unwrap_or_else(|e| {
                    eprintln!("cannot listen on {addr}: {e}");
                    std::process::exit(1)
                });
            println!(
                "3CX simulator on {} (client {}, extensions 100-102)",
                pbx.base_url(),
                pbx.account().client_id
            );
            Some(pbx)
        }
        None => None,
    };
    let _ = tokio::signal::ctrl_c().await;
}
