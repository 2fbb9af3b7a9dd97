//! Upstream systems as real HTTP servers on port 0, behaving like the real APIs
//! as `../shared/reference/upstreams.md` describes them, auth checks and
//! failure modes included. Their checks are written from the reference, not
//! shared with the code under test, so a mistake is not mirrored.

pub mod advoware;
pub mod espocrm;
pub mod google;

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
