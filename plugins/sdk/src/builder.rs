//! The builder methods the outbound request types share (`http::Request` and
//! the REST upstreams' `rest::Request`): each defines `new` and `send`, this
//! adds the rest. A macro because the two wrap different WIT records.

macro_rules! request_builder {
    // REST upstream requests also take query pairs, encoded by the host.
    ($target:ident, query) => {
        crate::builder::request_builder!($target);

        pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.inner.query.push((name.into(), value.into()));
            self
        }
    };
    ($target:ident) => {
        pub fn get($target: impl Into<String>) -> Self {
            Self::new("GET", $target)
        }

        pub fn post($target: impl Into<String>) -> Self {
            Self::new("POST", $target)
        }

        pub fn put($target: impl Into<String>) -> Self {
            Self::new("PUT", $target)
        }

        pub fn delete($target: impl Into<String>) -> Self {
            Self::new("DELETE", $target)
        }

        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.inner.headers.push((name.into(), value.into()));
            self
        }

        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.inner.body = Some(body.into());
            self
        }

        /// A JSON body with its content type.
        pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, crate::Error> {
            let body = serde_json::to_vec(value)
                .map_err(|e| crate::Error::Internal(format!("body not serialisable: {e}")))?;
            Ok(self.header("content-type", "application/json").body(body))
        }

        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.inner.timeout_ms = Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
            self
        }
    };
}

pub(crate) use request_builder;
