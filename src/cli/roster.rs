//! Reading a roster CSV as spreadsheets export it (UTF-8, UTF-8 with BOM,
//! or Shift_JIS/CP932), and checking it before launch: the mistakes that
//! stopped a ward's logins at 9:00 in 2021 (ticket numbers and birth dates
//! that did not line up), found with their line numbers.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::csv_text::LineCounter;
use crate::domain::{TICKET_NUMBER_DIGITS, is_forbidden_in_text, parse_date};

/// A birth date this many years before today is implausible.
pub const AGE_YEARS_MAX: i32 = 120;

/// How a file's bytes were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf8WithBom,
    ShiftJis,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8WithBom => "UTF-8 with BOM",
            Encoding::ShiftJis => "Shift_JIS (CP932)",
        }
    }
}

/// The file as text: UTF-8 (with or without BOM), else Shift_JIS/CP932.
/// `Err` when it is neither.
pub fn decode(bytes: &[u8]) -> Result<(String, Encoding), String> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()) {
        return std::str::from_utf8(rest)
            .map(|t| (t.to_owned(), Encoding::Utf8WithBom))
            .map_err(|e| format!("starts with a UTF-8 BOM but is not UTF-8: {e}"));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok((text.to_owned(), Encoding::Utf8));
    }
    let (text, _, had_errors) = encoding_rs::SHIFT_JIS.decode(bytes);
    if had_errors {
        return Err("neither UTF-8 nor Shift_JIS (CP932): save it as UTF-8 CSV".into());
    }
    Ok((text.into_owned(), Encoding::ShiftJis))
}

/// What can be wrong with a roster line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Finding {
    MalformedTicketNumber,
    DuplicateTicketNumber,
    ImpossibleBirthDate,
    BirthDateInTheFuture,
    ImplausiblyOld,
    ColumnsLookShifted,
    MissingName,
    ControlCharacters,
    UnreadableLine,
}

impl Finding {
    pub fn describe(self) -> &'static str {
        match self {
            Finding::MalformedTicketNumber => "ticket number is not 10 digits",
            Finding::DuplicateTicketNumber => "ticket number appears twice",
            Finding::ImpossibleBirthDate => "birth date is not a real YYYY-MM-DD date",
            Finding::BirthDateInTheFuture => "birth date is in the future",
            Finding::ImplausiblyOld => "birth date is more than 120 years ago",
            Finding::ColumnsLookShifted => {
                "columns look shifted (a date where the ticket number belongs, or the reverse)"
            }
            Finding::MissingName => "name is empty",
            Finding::ControlCharacters => {
                "name, email or phone holds a line break, tab or other control character (the server refuses the line)"
            }
            Finding::UnreadableLine => "the line could not be read as CSV",
        }
    }
}

/// One problem, on one line of the file (the header is line 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub finding: Finding,
    /// For a duplicate: the line it first appeared on.
    pub first_line: Option<usize>,
}

/// The roster's checked lines.
pub struct Report {
    pub records: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    /// Problems counted by kind.
    pub fn summary(&self) -> Vec<(Finding, usize)> {
        let mut counts: HashMap<Finding, usize> = HashMap::new();
        for problem in &self.problems {
            *counts.entry(problem.finding).or_default() += 1;
        }
        let mut summary: Vec<(Finding, usize)> = counts.into_iter().collect();
        summary.sort();
        summary
    }
}

fn looks_like_date(text: &str) -> bool {
    let b = text.as_bytes();
    (b.len() == 10 && b[4] == b'-' && b[7] == b'-')
        || (b.len() == 10 && b[4] == b'/' && b[7] == b'/')
}

fn looks_like_ticket(text: &str) -> bool {
    text.len() == TICKET_NUMBER_DIGITS && text.bytes().all(|b| b.is_ascii_digit())
}

/// Checks every line of a roster CSV (header with at least `ticket_number`,
/// `birth_date` and `name`). `Err` when the header is unusable.
pub fn check(text: &str, today: NaiveDate) -> Result<Report, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("the header row cannot be read: {e}"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let texts_at: Vec<usize> = ["name", "email", "phone"]
        .into_iter()
        .filter_map(&column)
        .collect();
    let (Some(ticket_at), Some(birth_at), Some(name_at)) = (
        column("ticket_number"),
        column("birth_date"),
        column("name"),
    ) else {
        return Err("the header must name ticket_number, birth_date and name".into());
    };
    let oldest = today
        .checked_sub_months(chrono::Months::new(12 * AGE_YEARS_MAX as u32))
        .unwrap_or(NaiveDate::MIN);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut problems = Vec::new();
    let mut records = 0;
    let mut lines = LineCounter::new(text.as_bytes());
    for row in reader.records() {
        records += 1;
        let line = lines.line_at(match &row {
            Ok(row) => row.position(),
            Err(error) => error.position(),
        });
        let Ok(row) = row else {
            problems.push(Problem {
                line,
                finding: Finding::UnreadableLine,
                first_line: None,
            });
            continue;
        };
        let field = |i: usize| row.get(i).unwrap_or("");
        let (ticket, birth, name) = (field(ticket_at), field(birth_at), field(name_at));
        let mut found = |finding, first_line| {
            problems.push(Problem {
                line,
                finding,
                first_line,
            })
        };
        if looks_like_date(ticket) || looks_like_ticket(birth) {
            found(Finding::ColumnsLookShifted, None);
            continue;
        }
        if looks_like_ticket(ticket) {
            if let Some(first) = seen.get(ticket) {
                found(Finding::DuplicateTicketNumber, Some(*first));
            } else {
                seen.insert(ticket.to_owned(), line);
            }
        } else {
            found(Finding::MalformedTicketNumber, None);
        }
        match parse_date(birth) {
            Err(_) => found(Finding::ImpossibleBirthDate, None),
            Ok(date) if date > today => found(Finding::BirthDateInTheFuture, None),
            Ok(date) if date < oldest => found(Finding::ImplausiblyOld, None),
            Ok(_) => {}
        }
        if name.is_empty() {
            found(Finding::MissingName, None);
        }
        if texts_at
            .iter()
            .any(|&i| field(i).chars().any(is_forbidden_in_text))
        {
            found(Finding::ControlCharacters, None);
        }
    }
    Ok(Report { records, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    #[test]
    fn every_kind_of_mistake_is_found_on_its_line() {
        let csv = "ticket_number,birth_date,name\n\
            1311480001,1950-04-01,中野 一郎\n\
            131148000,1950-04-01,短い 番号\n\
            1311480001,1951-01-01,重複 太郎\n\
            1311480003,1950-02-30,ありえない 日\n\
            1311480004,2030-01-01,未来 花子\n\
            1311480005,1890-01-01,長寿 次郎\n\
            1950-04-01,1311480006,ずれた 列\n\
            1311480007,1960-01-01,\n\
            1311480008,1960-01-01,\"改行\r\nBcc: x\"\n\
            1311480009,1960-01-01,\u{202E}逆さ\n";
        let report = check(csv, today()).unwrap();
        let found: Vec<(usize, Finding)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.finding))
            .collect();
        assert_eq!(
            found,
            vec![
                (3, Finding::MalformedTicketNumber),
                (4, Finding::DuplicateTicketNumber),
                (5, Finding::ImpossibleBirthDate),
                (6, Finding::BirthDateInTheFuture),
                (7, Finding::ImplausiblyOld),
                (8, Finding::ColumnsLookShifted),
                (9, Finding::MissingName),
                (10, Finding::ControlCharacters),
                // The line before spans two.
                (12, Finding::ControlCharacters),
            ]
        );
        assert_eq!(report.problems[1].first_line, Some(2));
        assert_eq!(report.records, 10);
    }

    #[test]
    fn a_clean_roster_has_no_problems() {
        let csv = "ticket_number,birth_date,name\n1311480001,1950-04-01,中野 一郎\n";
        assert!(check(csv, today()).unwrap().problems.is_empty());
        assert!(check("ticket,birth\n", today()).is_err());
    }

    #[test]
    fn shift_jis_and_bom_files_decode() {
        let (sjis, _, _) =
            encoding_rs::SHIFT_JIS.encode("ticket_number,name\n1311480001,中野 太郎\n");
        let (text, encoding) = decode(&sjis).unwrap();
        assert_eq!(encoding, Encoding::ShiftJis);
        assert!(text.contains("中野 太郎"));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice("名前\n".as_bytes());
        assert_eq!(
            decode(&bom).unwrap(),
            ("名前\n".to_owned(), Encoding::Utf8WithBom)
        );
        assert!(decode(&[0x82, 0xFF, 0xFF]).is_err());
    }

    proptest::proptest! {
        /// Any file: decoded or refused, and every problem on a line of it.
        #[test]
        fn any_roster_file_is_checked_without_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut file = b"ticket_number,birth_date,name\n".to_vec();
            file.extend_from_slice(&bytes);
            if let Ok((text, _)) = decode(&file) {
                // Lines end with LF, CRLF or a lone CR.
                let lines = text.replace("\r\n", "\n").replace('\r', "\n").lines().count().max(1) + 1;
                if let Ok(report) = check(&text, today()) {
                    for problem in report.problems {
                        proptest::prop_assert!(problem.line <= lines, "{} of {}", problem.line, lines);
                    }
                }
            }
        }
    }
}
