//! Upstream systems as real HTTP servers on port 0, behaving like the real APIs
//! as `../shared/reference/upstreams.md` describes them, auth checks and
//! failure modes included. Their checks are written from the reference, not
//! shared with the code under test, so a mistake is not mirrored.

pub mod advoware;
pub mod espocrm;
pub mod google;
pub mod threecx;

/// A simulator's server: its app on a fixed address, which can stop taking
/// connections and take them again (an upstream that went away and came
/// back). Stops when dropped.
pub(crate) struct Server {
    addr: std::net::SocketAddr,
    app: axum::Router,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Server {
    /// Serves `app` on `listener` (bound first, so the app may know its address).
    pub(crate) fn start(listener: tokio::net::TcpListener, app: axum::Router) -> Self {
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, app.clone()));
        Self {
            addr,
            app,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Closes the listener and every open connection: new connections are refused.
    pub(crate) fn refuse_connections(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Listens again on the same address after [`Server::refuse_connections`].
    pub(crate) async fn accept_connections(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let task = tokio::spawn(serve(listener, self.app.clone()));
        if let Some(old) = self.task.lock().unwrap().replace(task) {
            old.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

/// Serves `app` on `listener`, HTTP/1 and 2. Aborting the task drops the
/// listener and every connection with it, so a simulator's "refuse
/// connections" also ends kept-alive ones.
async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
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

/// The faults every simulator can be told to show: a pause before each
/// answer, failures queued for the next requests (`F`: a status, or a
/// status with a body), and a break after some more requests, every one
/// failing until healed. Each simulator answers them in its API's own way.
pub(crate) struct Faults<F> {
    pub latency: std::time::Duration,
    failures: std::collections::VecDeque<F>,
    broken_after: Option<usize>,
}

impl<F> Default for Faults<F> {
    fn default() -> Self {
        Self {
            latency: std::time::Duration::ZERO,
            failures: std::collections::VecDeque::new(),
            broken_after: None,
        }
    }
}

/// What a request meets.
pub(crate) enum Fault<F> {
    /// The break (`break_after`) was reached: the simulator's outage answer.
    Broken,
    /// The next queued failure.
    Failure(F),
}

impl<F: Clone> Faults<F> {
    /// The next `count` requests fail with `failure`.
    pub(crate) fn fail_next(&mut self, count: usize, failure: F) {
        self.failures.extend(std::iter::repeat_n(failure, count));
    }

    /// After `requests` more requests, every one fails until [`Faults::heal`].
    pub(crate) fn break_after(&mut self, requests: usize) {
        self.broken_after = Some(requests);
    }

    /// Ends the break and drops queued failures.
    pub(crate) fn heal(&mut self) {
        self.broken_after = None;
        self.failures.clear();
    }

    /// The fault this request meets, if any; counts it toward the break.
    pub(crate) fn next(&mut self) -> Option<Fault<F>> {
        match &mut self.broken_after {
            Some(0) => return Some(Fault::Broken),
            Some(left) => *left -= 1,
            None => {}
        }
        self.failures.pop_front().map(Fault::Failure)
    }
}

/// HMAC (RFC 2104) over any of the simulators' hashes, written out here
/// rather than taken from the `hmac` crate the host uses, so a mistake in the
/// host's signing is not mirrored by the checks. `BLOCK` is the hash's block
/// size in bytes (64 for SHA-256, 128 for SHA-512).
pub fn hmac<D: sha2::Digest, const BLOCK: usize>(key: &[u8], message: &[u8]) -> Vec<u8> {
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
