//! The dashboard: one page under `/admin/dashboard` that an operator opens in
//! a browser, over the admin API. Its HTML, script and styles are in the
//! binary (`dashboard/`), so it needs nothing from the internet and no build
//! step. Off when no admin token is set (404, like the rest of `/admin`).
//!
//! A browser cannot send a bearer token when it opens a page, so the page
//! asks for the admin token once and answers with a session cookie: its
//! expiry and an HMAC-SHA256 over it keyed by the admin token. Any host
//! instance can check it, nothing is stored, and changing the token ends
//! every session. The cookie is `HttpOnly` and `SameSite=Strict`; calls that
//! change something must also carry `x-bitbylaw-dashboard`, which a page of
//! another site cannot add without the browser asking first.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::host::Host;
use bitbylaw_core::secret::Secret;

/// The session cookie's name.
pub const COOKIE: &str = "bitbylaw_admin";

/// The header a cookie-authenticated change must carry.
pub const CHANGE_HEADER: &str = "x-bitbylaw-dashboard";

/// How long a session lasts.
const SESSION_FOR: Duration = Duration::from_secs(8 * 3600);

const PAGE: &str = include_str!("dashboard/index.html");
const LOGIN: &str = include_str!("dashboard/login.html");

/// The page and its login, outside the token check of the admin API.
pub fn router() -> Router<Arc<Host>> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(token: &Secret, expires: u64) -> Vec<u8> {
    // An HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()) else {
        return Vec::new();
    };
    mac.update(format!("bitbylaw-dashboard-session:{expires}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A session's cookie value: `<expiry>.<mac>`.
fn session_value(token: &Secret, expires: u64) -> String {
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac(token, expires)))
}

/// Whether `headers` carry a session cookie made with `token` that has not expired.
pub fn has_session(token: &Secret, headers: &HeaderMap) -> bool {
    let Some(value) = cookie(headers, COOKIE) else {
        return false;
    };
    let Some((expires, given)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
        return false;
    };
    expires > now_s() && bool::from(given.ct_eq(&mac(token, expires)))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `Secure` when the browser came over HTTPS (Kong or another proxy says so).
fn cookie_attributes(headers: &HeaderMap, max_age: u64) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    format!(
        "Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn not_enabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><title>Not found</title><p>The admin API is not enabled on this host.",
        ),
    )
        .into_response()
}

/// The login page, with a message when a token was refused; 401.
fn login_page(message: &str) -> Response {
    let page = LOGIN.replace("{{message}}", message);
    let mut response = (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    no_store(&mut response);
    response
}

/// Pages hold tenant data: never cached.
fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn page(State(host): State<Arc<Host>>, headers: HeaderMap) -> Response {
    let Some(token) = host.admin_token() else {
        return not_enabled();
    };
    if !has_session(token, &headers) {
        return login_page("");
    }
    let mut response = Html(PAGE).into_response();
    no_store(&mut response);
    // The page loads nothing from elsewhere; say so to the browser too.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    response
}

async fn login(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = host.admin_token() else {
        return not_enabled();
    };
    // The form's one field, `token=...` (application/x-www-form-urlencoded).
    let Some(given) = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
    else {
        return login_page("Please enter the admin token.");
    };
    let valid: bool = given
        .trim()
        .as_bytes()
        .ct_eq(token.expose().as_bytes())
        .into();
    if !valid {
        tracing::warn!("dashboard login refused: wrong token");
        return login_page("That is not the admin token.");
    }
    let expires = now_s() + SESSION_FOR.as_secs();
    let cookie = format!(
        "{COOKIE}={}; {}",
        session_value(token, expires),
        cookie_attributes(&headers, SESSION_FOR.as_secs())
    );
    tracing::info!("dashboard session opened");
    let mut response = Redirect::to("/admin/dashboard").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(headers: HeaderMap) -> Response {
    let mut response = Redirect::to("/admin/dashboard").into_response();
    let cookie = format!("{COOKIE}=; {}", cookie_attributes(&headers, 0));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={value}")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_session_holds_for_its_token_until_it_expires() {
        let token = Secret::new("admin-token-1");
        let later = now_s() + 60;
        assert!(has_session(
            &token,
            &with_cookie(&session_value(&token, later))
        ));
        let other = Secret::new("admin-token-2");
        assert!(
            !has_session(&other, &with_cookie(&session_value(&token, later))),
            "another token"
        );
        assert!(
            !has_session(&token, &with_cookie(&session_value(&token, now_s() - 1))),
            "expired"
        );
        let forged =
            session_value(&token, later).replace(&later.to_string(), &(later + 3600).to_string());
        assert!(
            !has_session(&token, &with_cookie(&forged)),
            "expiry changed"
        );
        assert!(!has_session(&token, &HeaderMap::new()));
        assert!(!has_session(&token, &with_cookie("garbage")));
    }
}
