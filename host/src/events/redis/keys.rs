//! Where one tenant's event structures live in Redis. Every key carries the
//! tenant's hash tag, so a tenant's scripts touch one Redis Cluster slot.

/// Key names of one tenant's event structures.
#[derive(Clone)]
pub(super) struct Keys {
    base: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, tenant: &str) -> Self {
        Self {
            base: format!("{prefix}:{{{tenant}}}:ev:"),
        }
    }
    pub(super) fn topic(&self, topic: &str) -> String {
        format!("{}topic:{topic}", self.base)
    }
    pub(super) fn direct(&self, plugin: &str) -> String {
        format!("{}direct:{plugin}", self.base)
    }
    pub(super) fn retry_set(&self) -> String {
        format!("{}retry", self.base)
    }
    pub(super) fn retry_record(&self, id: &str) -> String {
        format!("{}retry:{id}", self.base)
    }
    /// Retries waiting, per `plugin|topic`, kept by the scripts.
    pub(super) fn retry_counts(&self) -> String {
        format!("{}retry-counts", self.base)
    }
    /// Dead letters, per `plugin|topic`, kept by the scripts.
    pub(super) fn dead_counts(&self) -> String {
        format!("{}dead-counts", self.base)
    }
    pub(super) fn dead(&self) -> String {
        format!("{}dead", self.base)
    }
}

/// A retry waiting in the sorted set: `<plugin>|<record id>|<topic>`, so the
/// pump finds the plugin's stream and the script the subscription's count.
pub(super) struct RetryMember<'a> {
    pub plugin: &'a str,
    pub record: &'a str,
}

impl<'a> RetryMember<'a> {
    pub(super) fn parse(member: &'a str) -> Option<Self> {
        let mut parts = member.splitn(3, '|');
        let plugin = parts.next()?;
        let record = parts.next()?;
        parts.next()?;
        Some(Self { plugin, record })
    }
}
