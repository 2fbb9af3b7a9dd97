//! Upstream systems as real HTTP servers on port 0, behaving like the real APIs
//! as `../shared/reference/upstreams.md` describes them, auth checks and
//! failure modes included. Their checks are written from the reference, not
//! shared with the code under test, so a mistake is not mirrored.

pub mod advoware;
pub mod espocrm;
pub mod google;

/// Serves `app` on `listener`, HTTP/1 and 2. Aborting the task drops the
/// listener and every connection with it, so a simulator's "refuse
/// connections" also ends kept-alive ones.
pub(crate) async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// HMAC (RFC 2104) over any of the simulators' hashes, written out here
/// rather than taken from the `hmac` crate the host uses, so a mistake in the
/// host's signing is not mirrored by the checks. `BLOCK` is the hash's block
/// size in bytes (64 for SHA-256, 128 for SHA-512).
pub(crate) fn hmac<D: sha2::Digest, const BLOCK: usize>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = if key.len() > BLOCK {
        D::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    block.resize(BLOCK, 0);
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = D::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    D::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}
