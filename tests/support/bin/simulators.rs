//! The upstream simulators as a program, for the demo and for trying plugins by hand.
//!
//! `simulators [--advoware 127.0.0.1:9471]` runs Advoware (configurator, security
//! gateway, REST API with demo data) until Ctrl-C. The account is the simulator's
//! default one; `deploy/demo` is configured for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, TOKEN_LIFETIME};

#[tokio::main]
async fn main() {
    let mut advoware_addr: SocketAddr = "127.0.0.1:9471".parse().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--advoware", Some(addr)) => {
                advoware_addr = addr.parse().unwrap_or_else(|e| {
                    eprintln!("--advoware `{addr}`: {e}");
                    std::process::exit(2)
                });
            }
            _ => {
                eprintln!("usage: simulators [--advoware <address:port>]");
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
    let _ = tokio::signal::ctrl_c().await;
}
