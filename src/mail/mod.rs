//! Mail to residents (API.md "Notifications"): the settings, the SMTP
//! transport, the templates (`template.rs`) and the delivery worker
//! (`worker.rs`). What to send is decided with each reservation change and
//! written by the store in the same commit (`domain::MailPolicy`, the
//! batches' `mail`); this module only delivers what the outbox holds.

mod template;
mod worker;

pub use template::{MailContext, ReservationView, TEMPLATE_BYTES_MAX, Templates};
pub use worker::{
    MAIL_CLAIM_BATCH_MAX, MAIL_GIVE_UP_AFTER, MAIL_POLL_INTERVAL, MAIL_RETRY_FIRST,
    MAIL_SENDS_IN_FLIGHT_MAX, OutboxGauge, REMINDER_CHECK_INTERVAL, retry_delay, start,
};

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use lettre::message::Mailbox;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::domain::MailPolicy;

/// Longest wait for the SMTP server to connect, and for one mail's whole
/// send while this process runs (the worker bounds the send itself,
/// `worker::while_the_server_answers`: lettre's async transport bounds only
/// the connect, and a server that accepted a connection and then said
/// nothing held the worker for ever).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Mail settings, from `VAXSLOT_SMTP_URL` and its companions.
#[derive(Clone)]
pub struct MailSettings {
    /// A secret (it may hold the SMTP password): never logged.
    pub smtp_url: String,
    pub from: String,
    pub reminder_at: NaiveTime,
    /// A ward's templates; `None`: the built-in ones.
    pub templates: Option<PathBuf>,
    /// Longest wait between two tries of one mail.
    pub retry_max: Duration,
    /// Where residents book and cancel on the web, written in every mail.
    pub site_url: String,
    /// The call centre's number, written in every mail.
    pub call_centre_phone: String,
}

impl MailSettings {
    pub fn policy(&self) -> MailPolicy {
        MailPolicy {
            reminder_at: self.reminder_at,
        }
    }
}

/// What the worker needs to send: the transport, the sender, the templates.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of every `Message-ID` (the sender's domain).
    message_id_domain: String,
    templates: Templates,
    settings: MailSettings,
}

impl Mailer {
    /// Checks everything a mail needs before the server starts: a bad URL,
    /// sender or template stops the start with a message saying which.
    pub fn build(settings: MailSettings) -> Result<Self, String> {
        let from: Mailbox = settings.from.parse().map_err(|e| {
            format!(
                "VAXSLOT_MAIL_FROM {:?} is not an e-mail address: {e}",
                settings.from
            )
        })?;
        let message_id_domain = from.email.domain().to_owned();
        let templates = match &settings.templates {
            Some(dir) => Templates::load(dir)?,
            None => Templates::built_in(),
        };
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(&lettre_url(&settings.smtp_url)?)
                .map_err(|e| format!("VAXSLOT_SMTP_URL is not usable: {e}"))?
                .timeout(Some(SMTP_TIMEOUT))
                .pool_config(PoolConfig::new().max_size(MAIL_SENDS_IN_FLIGHT_MAX as u32))
                .build();
        Ok(Self {
            transport,
            from,
            message_id_domain,
            templates,
            settings,
        })
    }
}

/// API.md's SMTP URL in lettre's terms: `smtps://` is TLS from the start;
/// `smtp://` to port 587 (or with no port) is STARTTLS, required; `smtp://`
/// to any other port (25 for a local relay) is plain, unless `?tls=required`
/// or `?tls=opportunistic` says otherwise. A password is refused over plain
/// SMTP to anything but loopback.
fn lettre_url(text: &str) -> Result<String, String> {
    let mut url =
        url::Url::parse(text).map_err(|e| format!("VAXSLOT_SMTP_URL is not a URL: {e}"))?;
    let tls_asked = url.query_pairs().any(|(k, _)| k == "tls");
    let plain = match url.scheme() {
        "smtps" => false,
        "smtp" if tls_asked => false,
        "smtp" if matches!(url.port(), None | Some(587)) => {
            url.query_pairs_mut().append_pair("tls", "required");
            false
        }
        "smtp" => true,
        other => {
            return Err(format!(
                "VAXSLOT_SMTP_URL must start with smtp:// or smtps://, not {other}://"
            ));
        }
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // smtp:// is not a special scheme: its IP addresses come as names.
        Some(url::Host::Domain(name)) => {
            name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => return Err("VAXSLOT_SMTP_URL names no host".to_owned()),
    };
    if plain && url.password().is_some() && !loopback {
        return Err(
            "VAXSLOT_SMTP_URL sends a password over plain SMTP: use port 587 (STARTTLS), smtps://, or ?tls=required"
                .to_owned(),
        );
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_mean_what_api_md_says() {
        let tls = |text: &str| {
            let url = url::Url::parse(&lettre_url(text).unwrap()).unwrap();
            url.query_pairs()
                .find(|(k, _)| k == "tls")
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(
            tls("smtp://user:pass@mail.example.jp:587"),
            Some("required".into())
        );
        assert_eq!(tls("smtp://mail.example.jp"), Some("required".into()));
        assert_eq!(tls("smtp://127.0.0.1:25"), None);
        assert_eq!(
            tls("smtp://relay.example.jp:2525?tls=opportunistic"),
            Some("opportunistic".into())
        );
        assert_eq!(tls("smtps://user:pass@mail.example.jp"), None);
        assert!(lettre_url("smtp://user:secret@mail.example.jp:25").is_err());
        assert!(lettre_url("smtp://user:secret@127.0.0.1:2525").is_ok());
        assert!(lettre_url("http://mail.example.jp").is_err());
        assert!(lettre_url("not a url").is_err());
    }

    #[tokio::test]
    async fn a_bad_sender_or_url_stops_the_start_with_a_reason() {
        let settings = MailSettings {
            smtp_url: "smtp://127.0.0.1:2525".into(),
            from: "vaccine@city.example.jp".into(),
            reminder_at: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            templates: None,
            retry_max: Duration::from_secs(300),
            site_url: "https://vaccine.example.jp/".into(),
            call_centre_phone: "0120-000-000".into(),
        };
        let mailer = Mailer::build(settings.clone()).unwrap();
        assert_eq!(mailer.message_id_domain, "city.example.jp");
        let bad_from = MailSettings {
            from: "not an address".into(),
            ..settings.clone()
        };
        assert!(
            Mailer::build(bad_from)
                .err()
                .unwrap()
                .contains("VAXSLOT_MAIL_FROM")
        );
        let bad_url = MailSettings {
            smtp_url: "imap://127.0.0.1".into(),
            ..settings
        };
        assert!(Mailer::build(bad_url).err().unwrap().contains("smtp://"));
    }
}
