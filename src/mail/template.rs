//! The mail templates (`templates/mail/`, or a ward's copy named by
//! `--mail-templates`): plain text with `{{variable}}`s, checked when loaded
//! so that a typo stops the start, not a resident's mail.

use std::path::Path;

use chrono::Datelike;

use crate::domain::{MailKind, MailedReservation, Vaccine, Venue, one_line};

/// The templates built into the binary: `templates/mail/` of the source tree.
const BUILT_IN: [(&str, &str); 4] = [
    (
        "confirmation.txt",
        include_str!("../../templates/mail/confirmation.txt"),
    ),
    (
        "cancellation.txt",
        include_str!("../../templates/mail/cancellation.txt"),
    ),
    (
        "reminder.txt",
        include_str!("../../templates/mail/reminder.txt"),
    ),
    (
        "reservation.txt",
        include_str!("../../templates/mail/reservation.txt"),
    ),
];

/// Largest template file read.
pub const TEMPLATE_BYTES_MAX: usize = 64 * 1024;

/// Variables of one reservation (in `reservation.txt`, and in a mail about it).
const RESERVATION_VARIABLES: [&str; 10] = [
    "reservation_number",
    "date",
    "date_ja",
    "weekday_ja",
    "time",
    "venue_name",
    "venue_address",
    "venue_phone",
    "dose",
    "vaccine",
];
/// Variables of a whole mail, besides its reservation's.
const MAIL_VARIABLES: [&str; 4] = ["name", "reservations", "site_url", "call_centre_phone"];

/// Text with `{{variable}}`s, split once when loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(&'static str),
}

impl Template {
    /// Splits `text`; `Err` names an unknown variable or an unclosed `{{`.
    fn parse(text: &str, known: &[&'static str]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| "a `{{` is not closed by `}}`".to_owned())?;
            let name = after[..end].trim();
            let variable = known
                .iter()
                .find(|k| **k == name)
                .ok_or_else(|| format!("unknown variable {{{{{name}}}}}"))?;
            parts.push(Part::Variable(variable));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    fn render(&self, value: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(&value(name)),
            }
        }
        out
    }
}

/// One kind of mail: its subject line and its body.
#[derive(Clone, Debug)]
struct MailTemplate {
    subject: Template,
    body: Template,
}

impl MailTemplate {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text
            .strip_prefix('\u{feff}')
            .unwrap_or(text)
            .replace("\r\n", "\n");
        let (first, body) = text
            .split_once('\n')
            .ok_or("expected `Subject: …`, an empty line, then the body")?;
        let subject = first
            .strip_prefix("Subject:")
            .ok_or("the first line must be `Subject: …`")?
            .trim();
        let body = body
            .strip_prefix('\n')
            .ok_or("the subject line must be followed by an empty line")?;
        let known: Vec<&'static str> = MAIL_VARIABLES
            .iter()
            .chain(&RESERVATION_VARIABLES)
            .copied()
            .collect();
        Ok(Self {
            subject: Template::parse(subject, &known)?,
            body: Template::parse(body, &known)?,
        })
    }
}

/// Every template, loaded and checked.
#[derive(Clone, Debug)]
pub struct Templates {
    confirmation: MailTemplate,
    cancellation: MailTemplate,
    reminder: MailTemplate,
    reservation: Template,
}

/// What a mail says besides its reservations.
pub struct MailContext<'a> {
    pub name: &'a str,
    pub site_url: &'a str,
    pub call_centre_phone: &'a str,
}

/// A reservation with its venue, as a mail shows it.
pub struct ReservationView<'a> {
    pub reservation: &'a MailedReservation,
    pub venue: &'a Venue,
}

impl ReservationView<'_> {
    fn value(&self, name: &str) -> String {
        let r = self.reservation;
        match name {
            "reservation_number" => r.id.to_string(),
            "date" => r.date.format("%Y-%m-%d").to_string(),
            "date_ja" => format!("{}月{}日", r.date.month(), r.date.day()),
            "weekday_ja" => ["月", "火", "水", "木", "金", "土", "日"]
                [r.date.weekday().num_days_from_monday() as usize]
                .to_owned(),
            "time" => r.time.to_string(),
            // Stored text is shown on one line, whenever it was stored: a
            // line break in it can add no line to the mail.
            "venue_name" => one_line(&self.venue.name).into_owned(),
            "venue_address" => one_line(&self.venue.address).into_owned(),
            "venue_phone" => one_line(&self.venue.phone).into_owned(),
            "dose" => r.dose.number().to_string(),
            "vaccine" => match r.vaccine {
                Vaccine::Pfizer => "ファイザー".to_owned(),
                Vaccine::Moderna => "モデルナ".to_owned(),
            },
            _ => String::new(),
        }
    }
}

impl Templates {
    /// The built-in templates (`templates/mail/`).
    pub fn built_in() -> Self {
        Self::from_files(|file| {
            BUILT_IN
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, text)| (*text).to_owned())
                .ok_or_else(|| "missing".to_owned())
        })
        .expect("the built-in templates are checked by a test")
    }

    /// A ward's templates from `dir` (every file of `templates/mail/`).
    pub fn load(dir: &Path) -> Result<Self, String> {
        Self::from_files(|file| {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read it: {e}"))?;
            if bytes.len() > TEMPLATE_BYTES_MAX {
                return Err(format!("larger than {TEMPLATE_BYTES_MAX} bytes"));
            }
            String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
        })
        .map_err(|e| format!("mail templates in {}: {e}", dir.display()))
    }

    fn from_files(read: impl Fn(&str) -> Result<String, String>) -> Result<Self, String> {
        let mail = |file: &str| {
            read(file)
                .and_then(|text| MailTemplate::parse(&text))
                .map_err(|e| format!("{file}: {e}"))
        };
        let reservation = read("reservation.txt")
            .and_then(|text| Template::parse(&text, &RESERVATION_VARIABLES))
            .map_err(|e| format!("reservation.txt: {e}"))?;
        Ok(Self {
            confirmation: mail("confirmation.txt")?,
            cancellation: mail("cancellation.txt")?,
            reminder: mail("reminder.txt")?,
            reservation,
        })
    }

    /// The subject and body of a `kind` mail about `named` (the reservation
    /// it is named by) listing `all` (in order).
    pub fn render(
        &self,
        kind: MailKind,
        context: &MailContext<'_>,
        named: &ReservationView<'_>,
        all: &[ReservationView<'_>],
    ) -> (String, String) {
        let template = match kind {
            MailKind::Confirmation => &self.confirmation,
            MailKind::Cancellation => &self.cancellation,
            MailKind::Reminder => &self.reminder,
        };
        let blocks: Vec<String> = all
            .iter()
            .map(|view| self.reservation.render(&|name| view.value(name)))
            .collect();
        let reservations = blocks.join("\n");
        let value = |name: &str| match name {
            "name" => one_line(context.name).into_owned(),
            "reservations" => reservations.clone(),
            "site_url" => context.site_url.to_owned(),
            "call_centre_phone" => context.call_centre_phone.to_owned(),
            other => named.value(other),
        };
        (
            template.subject.render(&value),
            template.body.render(&value),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        BookingMode, Dose, ReservationId, SlotTime, VenueId, VenueKind, parse_date,
    };

    fn venue() -> Venue {
        Venue {
            id: VenueId::parse("nakano-sunplaza").unwrap(),
            name: "中野サンプラザ".into(),
            kind: VenueKind::Mass,
            booking: BookingMode::Central,
            address: "東京都中野区中野4-1-1".into(),
            phone: "03-3388-1151".into(),
            vaccines: vec![Vaccine::Pfizer],
        }
    }

    fn reservation(date: &str, dose: u8) -> MailedReservation {
        MailedReservation {
            id: ReservationId::random(),
            venue_id: venue().id,
            date: parse_date(date).unwrap(),
            time: SlotTime::parse("10:30").unwrap(),
            dose: Dose::new(dose).unwrap(),
            vaccine: Vaccine::Moderna,
        }
    }

    const CONTEXT: MailContext<'static> = MailContext {
        name: "中野 太郎",
        site_url: "https://vaccine.example.jp/",
        call_centre_phone: "0120-000-000",
    };

    #[test]
    fn the_built_in_templates_load_and_say_everything_a_resident_needs() {
        let templates = Templates::built_in();
        let venue = venue();
        let r = reservation("2030-07-07", 2);
        let view = ReservationView {
            reservation: &r,
            venue: &venue,
        };
        let (subject, body) = templates.render(
            MailKind::Confirmation,
            &CONTEXT,
            &view,
            std::slice::from_ref(&view),
        );
        assert_eq!(
            subject,
            "ワクチン接種のご予約を受け付けました（7月7日 10:30）"
        );
        for expected in [
            "中野 太郎 様",
            "中野サンプラザ",
            "東京都中野区中野4-1-1",
            "03-3388-1151",
            "7月7日（日） 10:30",
            "2030-07-07",
            "2回目（モデルナ）",
            &r.id.to_string(),
            "https://vaccine.example.jp/",
            "0120-000-000",
        ] {
            assert!(
                body.contains(expected),
                "{expected:?} missing from:\n{body}"
            );
        }
        assert!(!body.contains("{{"), "{body}");
    }

    #[test]
    fn a_cancellation_lists_every_cancelled_dose() {
        let templates = Templates::built_in();
        let venue = venue();
        let first = reservation("2030-07-07", 1);
        let second = reservation("2030-07-28", 2);
        let views = [
            ReservationView {
                reservation: &first,
                venue: &venue,
            },
            ReservationView {
                reservation: &second,
                venue: &venue,
            },
        ];
        let (_, body) = templates.render(MailKind::Cancellation, &CONTEXT, &views[0], &views);
        assert!(body.contains("1回目") && body.contains("2回目"), "{body}");
        assert!(body.contains(&first.id.to_string()) && body.contains(&second.id.to_string()));
    }

    #[test]
    fn a_ward_typo_is_refused_with_the_file_and_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in BUILT_IN {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        assert!(Templates::load(dir.path()).is_ok());
        std::fs::write(
            dir.path().join("reminder.txt"),
            "Subject: 明日です\n\n{{nmae}} 様\n",
        )
        .unwrap();
        let error = Templates::load(dir.path()).unwrap_err();
        assert!(
            error.contains("reminder.txt") && error.contains("{{nmae}}"),
            "{error}"
        );
        std::fs::write(dir.path().join("reminder.txt"), "明日です\n\n本文\n").unwrap();
        assert!(
            Templates::load(dir.path())
                .unwrap_err()
                .contains("Subject:")
        );
        std::fs::write(dir.path().join("reminder.txt"), "Subject: x\n\n{{name\n").unwrap();
        assert!(
            Templates::load(dir.path())
                .unwrap_err()
                .contains("not closed")
        );
        std::fs::write(dir.path().join("reminder.txt"), [0xff, 0xfe]).unwrap();
        assert!(Templates::load(dir.path()).unwrap_err().contains("UTF-8"));
        std::fs::remove_file(dir.path().join("reservation.txt")).unwrap();
        assert!(
            Templates::load(dir.path())
                .unwrap_err()
                .contains("reservation.txt")
        );
    }

    #[test]
    fn reservation_variables_are_not_mail_variables_in_the_block() {
        assert!(Template::parse("{{name}}", &RESERVATION_VARIABLES).is_err());
        assert!(Template::parse("{{ venue_name }}", &RESERVATION_VARIABLES).is_ok());
    }

    #[test]
    fn text_stored_with_line_breaks_adds_no_line_to_a_mail() {
        let templates = Templates::built_in();
        let mut venue = venue();
        venue.name = "会場\r\nBcc: victim@evil.example".into();
        venue.address = "住所\n.\n".into();
        let r = reservation("2030-07-07", 1);
        let view = ReservationView {
            reservation: &r,
            venue: &venue,
        };
        let context = MailContext {
            name: "住民\r\nBcc: victim@evil.example",
            ..CONTEXT
        };
        let (subject, body) = templates.render(
            MailKind::Confirmation,
            &context,
            &view,
            std::slice::from_ref(&view),
        );
        for text in [&subject, &body] {
            assert!(
                !text.lines().any(|l| l.starts_with("Bcc:") || l == "."),
                "{text}"
            );
        }
        assert!(body.contains("住民  Bcc: victim@evil.example 様"), "{body}");
        assert!(body.contains("住所: 住所 ."), "{body}");
    }
}
