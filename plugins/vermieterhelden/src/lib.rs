//! `vermieterhelden`: leads from the firm's WordPress site (Contact Form 7,
//! Elementor Pro, Gravity Forms) at `POST /api/leads/vermieterhelden?form=<key>`.
//!
//! A delivery is authenticated per form (a shared secret, or Standard
//! Webhooks signatures), read whatever its shape, turned into one lead by the
//! form's field map (email checked, phone in E.164), merged into the lead of
//! the same email or phone number within the duplicate window, and stored
//! before the 200 goes out: a WordPress form shows the visitor an error on any
//! other answer, and a lead once answered must not be lost. The lead is then
//! announced (`lead.created`, or `contact.submitted` for a contact form)
//! through the SDK's inbox, and its handler creates or updates it in EspoCRM,
//! retrying while EspoCRM is down. Mieter and Vermieter leads go on as
//! `lead.qualify` for the telephony plugin. See `docs/plugins/vermieterhelden.md`.

mod auth;
mod crm;
mod lead;
mod payload;
mod settings;

use std::time::Duration;

use bitbylaw_sdk::inbox::{Inbox, Worked};
use bitbylaw_sdk::sync::Failure;
use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, Router, StoreError,
    Subscriptions, Tick, events, info, kv, lock, metrics, secrets, warn,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::lead::{Lead, LeadType};
use crate::settings::{Auth, Settings};

const LEAD_CREATED: &str = "lead.created";
const CONTACT_SUBMITTED: &str = "contact.submitted";
const LEAD_QUALIFY: &str = "lead.qualify";
/// The party sync's topic (`vmh-webhooks`), for `advoware_parties`.
const PARTY_REQUESTED: &str = "vmh.party.requested";
const SWEEP: &str = "vermieterhelden_sweep";

/// The one inbox of this plugin: leads whose sync to EspoCRM is on its way.
fn inbox() -> Inbox {
    Inbox::new("leads")
}

/// The payload of `lead.created` and `contact.submitted`: the stored lead's id.
#[derive(Debug, Serialize, Deserialize)]
struct Announced {
    lead: String,
}

struct Vermieterhelden;

impl Plugin for Vermieterhelden {
    fn describe() -> Description {
        Description::new("vermieterhelden", env!("CARGO_PKG_VERSION"))
    }

    fn routes() -> Router {
        Router::new()
            .post("/api/leads/vermieterhelden", receive)
            .get("/api/leads/vermieterhelden/{id}", read_lead)
    }

    fn subscriptions() -> Subscriptions {
        Subscriptions::new()
            .topic(LEAD_CREATED, handle_lead)
            .topic(CONTACT_SUBMITTED, handle_lead)
            .schedule(SWEEP, "30 * * * * *", sweep)
    }
}

fn lead_key(id: &str) -> String {
    format!("lead:{id}")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn refused(message: impl std::fmt::Display) -> Response {
    Response::json(
        401,
        &json!({ "error": "unauthorized", "message": message.to_string() }),
    )
}

/// `POST /api/leads/vermieterhelden`: one form submission.
fn receive(request: Request) -> Result<Response, Error> {
    let settings = Settings::load()?;
    let submission = payload::read(request.header("content-type"), request.body())
        .map_err(|unreadable| Error::BadRequest(unreadable.0))?;
    let Some((key, form)) = settings.form(request.query("form"), submission.form_id.as_deref())
    else {
        return Err(Error::NotFound(match request.query("form") {
            Some(key) => format!("no form `{key}` in this tenant's settings"),
            None => {
                "which form? add `?form=<key>` to the webhook URL (or set the form's `form_id`)"
                    .into()
            }
        }));
    };
    let secret_name = form.secret.as_deref().unwrap_or(key);
    let Some(secret) = secrets::get(secret_name) else {
        return Err(Error::Unavailable(format!(
            "the secret `{secret_name}` of form `{key}` is not set"
        )));
    };
    // A Standard Webhooks id is taken for ten minutes once its signature
    // checks out; let go again if the lead is not stored, so a retry passes.
    let mut replay_guard = None;
    match form.auth {
        Auth::SharedSecret => {
            if let Err(refusal) = auth::shared_secret(request.header(&form.secret_header), &secret)
            {
                return Ok(refused(refusal));
            }
        }
        Auth::StandardWebhooks => {
            let signed = auth::Signed {
                id: request.header("webhook-id"),
                timestamp: request.header("webhook-timestamp"),
                signature: request.header("webhook-signature"),
            };
            let id = match auth::standard_webhooks(
                &signed,
                request.body(),
                &secret,
                chrono::Utc::now().timestamp(),
            ) {
                Ok(id) => id,
                Err(refusal) => return Ok(refused(refusal)),
            };
            let name = format!("webhook-id:{key}:{id}");
            let ttl = Duration::from_secs(2 * auth::TOLERANCE_S.unsigned_abs() + 60);
            match lock::acquire(&name, ttl)? {
                Some(lease) => replay_guard = Some(lease),
                None => return Ok(refused(auth::Refused::Replayed)),
            }
        }
    }
    let lead = lead::build(&submission, &form.fields, form.kind, key);
    if lead.email.is_none() && lead.phone.is_none() {
        return Err(Error::BadRequest(format!(
            "form `{key}` sent neither an email address nor a phone number"
        )));
    }
    let kind = form.kind;
    let stored = store(&settings, lead, &request_id(&request));
    let (id, updated) = match stored {
        Ok(stored) => stored,
        Err(error) => {
            if let Some(lease) = replay_guard {
                let _ = lease.release();
            }
            return Err(error);
        }
    };
    // Stored: from here on the lead is not lost. Its event goes out now, or
    // with the next sweep if this fails.
    let fresh = inbox().admit(std::slice::from_ref(&id))?;
    if let Err(error) = announce(&fresh) {
        warn!("lead {id} stored; its event will go out with the next sweep: {error}");
    }
    metrics::counter_add(
        "vermieterhelden_leads",
        &[
            ("type", type_name(kind)),
            ("outcome", if updated { "updated" } else { "created" }),
        ],
        1,
    );
    info!("lead {id} from form {key}: {}", if updated { "updated" } else { "new" }; "type" => type_name(kind));
    Ok(Response::json(
        200,
        &json!({ "status": "received", "lead": id, "updated": updated }),
    ))
}

/// The host's request id, as a lead id (it is unique per request).
fn request_id(request: &Request) -> String {
    let id: String = request
        .request_id()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    format!("lead-{id}")
}

fn type_name(kind: LeadType) -> &'static str {
    match kind {
        LeadType::Mieter => "Mieter",
        LeadType::Vermieter => "Vermieter",
        LeadType::Anfrage => "Anfrage",
        LeadType::Kontakt => "Kontakt",
        LeadType::Newsletter => "Newsletter",
    }
}

/// Keeps the lead: merged into the lead of the same email or phone number
/// within the window, else new. Under a lease per contact, so two
/// submissions at once of the same person make one lead.
fn store(settings: &Settings, mut lead: Lead, new_id: &str) -> Result<(String, bool), Error> {
    let keys = lead.contact_keys();
    let _held = match keys.first() {
        Some(contact) => Some(hold(&format!("contact:{contact}"))?),
        None => None,
    };
    let at = now();
    let mut found = None;
    for contact in &keys {
        if let Some(id) =
            kv::get(&format!("by-{contact}"))?.and_then(|bytes| String::from_utf8(bytes).ok())
            && let Some(existing) = kv::get_json::<Lead>(&lead_key(&id))?
        {
            found = Some(existing);
            break;
        }
    }
    let (stored, updated) = match found {
        Some(mut existing) => {
            existing.absorb(lead, &at);
            (existing, true)
        }
        None => {
            lead.id = new_id.to_owned();
            lead.received_at = at;
            (lead, false)
        }
    };
    kv::set_json(&lead_key(&stored.id), &stored, None)?;
    for contact in stored.contact_keys() {
        kv::set(
            &format!("by-{contact}"),
            stored.id.as_bytes(),
            Some(settings.window()),
        )?;
    }
    Ok((stored.id, updated))
}

/// A contact's lease: a receipt takes milliseconds, so waiting up to two
/// seconds for another one of the same person is enough.
fn hold(name: &str) -> Result<lock::Held, Error> {
    lock::hold_within(name, Duration::from_secs(10), Duration::from_secs(2))?
        .ok_or_else(|| Error::Unavailable(format!("{name} is held by another receipt; send again")))
}

/// One event per lead, on its type's topic.
fn announce(ids: &[String]) -> Result<(), Error> {
    let mut contacts = Vec::new();
    let mut leads = Vec::new();
    for id in ids {
        let kind = kv::get_json::<Lead>(&lead_key(id))?.and_then(|lead| lead.kind);
        if kind == Some(LeadType::Kontakt) {
            contacts.push(id.clone());
        } else {
            leads.push(id.clone());
        }
    }
    for (topic, ids) in [(LEAD_CREATED, leads), (CONTACT_SUBMITTED, contacts)] {
        inbox().announce(topic, &ids, |id| Announced {
            lead: id.to_owned(),
        })?;
    }
    Ok(())
}

/// `GET /api/leads/vermieterhelden/{id}`: a stored lead, as kept here.
fn read_lead(request: Request) -> Result<Response, Error> {
    let id = request.require_param("id")?;
    match kv::get_json::<Lead>(&lead_key(id))? {
        Some(lead) => Ok(Response::json(200, &lead)),
        None => Err(Error::NotFound(format!("no lead `{id}`"))),
    }
}

/// A lead's way into EspoCRM, from its event.
fn handle_lead(event: Event) -> Result<(), HandlerError> {
    let announced: Announced = event.json()?;
    let id = announced.lead;
    let worked = inbox().work(&event, &id, announce, || {
        Settings::load()
            .map_err(|e| Failure::Retryable(e.to_string()))
            .and_then(|settings| sync(&settings, &id))
    })?;
    let outcome = match &worked {
        Worked::Done(outcome) => *outcome,
        Worked::Failed(failure) => failure.outcome(),
        Worked::Requeued => "retry",
    };
    metrics::counter_add("vermieterhelden_syncs", &[("outcome", outcome)], 1);
    match worked {
        Worked::Done(outcome) => {
            info!("lead {id}: {outcome}");
            Ok(())
        }
        Worked::Requeued => {
            info!("lead {id}: busy on its last attempt; announced again");
            Ok(())
        }
        Worked::Failed(failure) => {
            warn!("lead {id}: {} ({})", failure.message(), failure.outcome());
            Err(failure.into())
        }
    }
}

/// The lead into EspoCRM under its own lease, then on to telephony.
fn sync(settings: &Settings, id: &str) -> Result<&'static str, Failure> {
    let ttl = Duration::from_secs(settings.lock_ttl_s.max(1));
    let Some(_held) = lock::hold(&format!("sync:{id}"), ttl)? else {
        return Err(Failure::Busy(format!("another sync of {id} runs")));
    };
    let Some(mut lead) = kv::get_json::<Lead>(&lead_key(id)).map_err(Failure::from)? else {
        return Ok("gone");
    };
    let outcome = if lead.kind == Some(LeadType::Newsletter) {
        crm::newsletter(settings, &mut lead)?
    } else {
        crm::upsert_lead(settings, &mut lead)?
    };
    // Once per lead, after it is in EspoCRM; emitted before the lead is
    // saved so a crash in between sends it again rather than never.
    if lead.kind.is_some_and(LeadType::qualifies) && !lead.qualified {
        qualify(&lead)?;
        lead.qualified = true;
    }
    if settings.advoware_parties
        && lead.kind.is_some_and(LeadType::qualifies)
        && !lead.party_requested
        && let Some(espocrm_id) = &lead.espocrm_id
    {
        let request = json!({ "entity": settings.lead_entity, "entity_id": espocrm_id });
        match events::emit(PARTY_REQUESTED, request.to_string().as_bytes()) {
            Ok(()) => lead.party_requested = true,
            // Turned on, but no party sync runs for the tenant: say so, every time.
            Err(StoreError::Invalid(reason)) => {
                warn!("lead {id}: `advoware_parties` is on, but {reason}: is vmh-webhooks set up?");
            }
            Err(error) => return Err(Failure::from(error)),
        }
    }
    kv::set_json(&lead_key(id), &lead, None).map_err(Failure::from)?;
    Ok(outcome)
}

/// `lead.qualify` for the telephony plugin (at least once per lead: key the
/// work by `lead`); a tenant without one has no subscriber, and the host
/// refuses the event: nothing to do then.
fn qualify(lead: &Lead) -> Result<(), Failure> {
    let payload = json!({
        "lead": lead.id,
        "type": lead.kind,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "phone": lead.phone,
        "phone_valid": lead.phone_valid,
        "email": lead.email,
        "espocrm_id": lead.espocrm_id,
    });
    match events::emit(LEAD_QUALIFY, payload.to_string().as_bytes()) {
        Ok(()) => Ok(()),
        Err(StoreError::Invalid(_)) => Ok(()),
        Err(error) => Err(Failure::from(error)),
    }
}

/// Announces what a receipt that died left pending, and leads pending past
/// `stuck_after_s` with their event gone.
fn sweep(tick: Tick) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    let now = i64::try_from(tick.scheduled_at).unwrap_or(i64::MAX);
    let inbox = inbox();
    let stuck = inbox.stuck(Duration::from_secs(settings.stuck_after_s), now)?;
    let orphans = inbox.sweep()?;
    for (what, ids) in [("stuck", stuck), ("unannounced", orphans)] {
        if !ids.is_empty() {
            warn!("{} leads {what}; announcing them", ids.len());
            announce(&ids)?;
        }
    }
    Ok(())
}

bitbylaw_sdk::export_plugin!(Vermieterhelden);
