//! Text that people type and others read (names, venue name, address and
//! phone, reasons, display names): what it may hold (API.md "Conventions"),
//! and how text stored before that rule is shown safely.

use std::borrow::Cow;

use super::DomainError;

/// A character no such text may hold: a C0 or C1 control (CR, LF, TAB and
/// NUL included, and DEL), or a Unicode bidirectional control, which can
/// make a name read backwards in a roster.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// How a text field must look.
#[derive(Clone, Copy, Debug)]
pub struct TextRule {
    /// The member's name, as the client sent it (`field` of the answer).
    pub field: &'static str,
    pub max_chars: usize,
    /// Whether blank text (empty or only spaces) is refused.
    pub required: bool,
}

impl TextRule {
    pub const fn required(field: &'static str, max_chars: usize) -> Self {
        Self {
            field,
            max_chars,
            required: true,
        }
    }

    pub const fn optional(field: &'static str, max_chars: usize) -> Self {
        Self {
            field,
            max_chars,
            required: false,
        }
    }

    /// `400 invalid_text` naming the field, for blank required text, text
    /// longer than the limit, or text with a forbidden character.
    pub fn check(self, text: &str) -> Result<(), DomainError> {
        let blank = self.required && text.trim().is_empty();
        if blank || text.chars().count() > self.max_chars || text.chars().any(is_forbidden) {
            return Err(DomainError::InvalidText { field: self.field });
        }
        Ok(())
    }
}

/// The text on one line and in reading order: every forbidden character
/// replaced by a space. For text stored before the rule, wherever it is
/// shown (a mail's header or body, a roster), so that it can neither add a
/// line nor turn what follows it around.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_forbidden) {
        Cow::Owned(
            text.chars()
                .map(|c| if is_forbidden(c) { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: TextRule = TextRule::required("name", 10);

    #[test]
    fn control_and_bidi_characters_are_refused_with_the_field_named() {
        for bad in [
            "住民\r\nBcc: x",
            "a\tb",
            "a\0b",
            "a\u{7f}",
            "a\u{85}b",
            "\u{202E}abc",
            "a\u{2066}b",
            "a\u{2069}",
        ] {
            assert_eq!(
                NAME.check(bad),
                Err(DomainError::InvalidText { field: "name" }),
                "{bad:?}"
            );
        }
        assert!(NAME.check("中野 太郎").is_ok());
        // Joiners and marks people's names need are not controls.
        assert!(NAME.check("a\u{200D}b\u{FE0F}").is_ok());
    }

    #[test]
    fn blank_and_long_text_follow_the_rule() {
        assert!(NAME.check(" ").is_err());
        assert!(TextRule::optional("phone", 10).check("").is_ok());
        assert!(NAME.check(&"あ".repeat(10)).is_ok());
        assert!(NAME.check(&"あ".repeat(11)).is_err());
    }

    #[test]
    fn stored_text_is_shown_on_one_line() {
        assert_eq!(one_line("住民\r\nBcc: x\u{202E}"), "住民  Bcc: x ");
        assert!(matches!(one_line("中野 太郎"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        /// Shown text is on one line and checked text is clean, whatever came in.
        #[test]
        fn one_line_text_passes_the_rule_it_was_made_for(text in "\\PC{0,40}|[\\x00-\\x{9f}\\x{2066}-\\x{2069}\\x{202a}-\\x{202e}a ]{0,40}") {
            let shown = one_line(&text);
            proptest::prop_assert!(!shown.chars().any(is_forbidden));
            proptest::prop_assert_eq!(shown.chars().count(), text.chars().count());
            let checked = TextRule::optional("name", 40).check(&text);
            proptest::prop_assert_eq!(checked.is_ok(), !text.chars().any(is_forbidden));
        }
    }
}
