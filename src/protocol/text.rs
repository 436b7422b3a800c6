//! What text from a peer may be, and how it is shown: the server's rules for display names
//! and room titles ([`clean_name`]), the look-alike key it compares names by ([`skeleton`]),
//! and the escaping every client applies before untrusted text reaches a terminal or a log
//! line ([`terminal_safe`]).
//!
//! Character properties come from Unicode's own data: general categories, emoji properties
//! and Default_Ignorable_Code_Point from `icu_properties`, NFC from `unicode-normalization`,
//! and the UTS #39 confusable skeleton from `unicode-security`. The only hand-written table
//! is `BLANK_GLYPHS`, for two characters that draw nothing yet are not Default_Ignorable.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use icu_properties::props::{
    DefaultIgnorableCodePoint, Emoji, EmojiModifier, ExtendedPictographic, GeneralCategory,
};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::UnicodeNormalization;

/// Which kind of text [`clean_name`] checks; it picks the wording and the reserved-word rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// A participant's display name, drawn next to the client's own labels.
    DisplayName,
    /// A room's title.
    RoomTitle,
    /// A line about oneself on a profile.
    Bio,
    /// Why someone is reported or suspended.
    Reason,
    /// What a device is called in its account's list.
    DeviceLabel,
    /// A line in a room's chat.
    ChatLine,
    /// What a moderator pins at the top of a room: a link or one line.
    Pin,
    /// What a scheduled room is about.
    Description,
}

impl TextKind {
    fn singular(self) -> &'static str {
        match self {
            TextKind::DisplayName => "name",
            TextKind::RoomTitle => "room title",
            TextKind::Bio => "bio",
            TextKind::Reason => "reason",
            TextKind::DeviceLabel => "device label",
            TextKind::ChatLine => "chat line",
            TextKind::Pin => "pinned line",
            TextKind::Description => "description",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            TextKind::DisplayName => "names",
            TextKind::RoomTitle => "room titles",
            TextKind::Bio => "bios",
            TextKind::Reason => "reasons",
            TextKind::DeviceLabel => "device labels",
            TextKind::ChatLine => "chat lines",
            TextKind::Pin => "pinned lines",
            TextKind::Description => "descriptions",
        }
    }
}

/// Why [`clean_name`] refused a text; the `Display` text is the message the client shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing visible is left once whitespace and invisible characters are ignored.
    #[error(
        "the {} is blank; type at least one visible letter, digit or symbol",
        .what.singular()
    )]
    Blank {
        /// Which kind of text was refused.
        what: TextKind,
    },
    /// More characters (counted after normalisation) than the server allows.
    #[error(
        "the {} is {len} characters long; shorten it to at most {max} characters",
        .what.singular()
    )]
    TooLong {
        /// Which kind of text was refused.
        what: TextKind,
        /// The most characters allowed.
        max: usize,
        /// How many characters the text had after normalisation.
        len: usize,
    },
    /// An invisible, zero-width or direction-changing character (format or default-ignorable).
    #[error(
        "{} cannot contain invisible or direction-changing characters ({}); type the {} again without them",
        .what.plural(),
        CodePoint(*.code_point),
        .what.singular()
    )]
    Invisible {
        /// Which kind of text was refused.
        what: TextKind,
        /// The first offending character.
        code_point: char,
    },
    /// A control character, line break or tab.
    #[error(
        "{} cannot contain control characters, tabs or line breaks ({}); type the {} on one line without them",
        .what.plural(),
        CodePoint(*.code_point),
        .what.singular()
    )]
    Control {
        /// Which kind of text was refused.
        what: TextKind,
        /// The first offending character.
        code_point: char,
    },
    /// A private-use character, which means something different on every device.
    #[error(
        "{} cannot contain private-use characters ({}), which look different on every device; remove them",
        .what.plural(),
        CodePoint(*.code_point)
    )]
    PrivateUse {
        /// Which kind of text was refused.
        what: TextKind,
        /// The first offending character.
        code_point: char,
    },
    /// A code point that Unicode has not assigned (or a surrogate).
    #[error(
        "{} cannot contain {}, which is not an assigned Unicode character; remove it",
        .what.plural(),
        CodePoint(*.code_point)
    )]
    Unassigned {
        /// Which kind of text was refused.
        what: TextKind,
        /// The first offending character.
        code_point: char,
    },
    /// A display name containing, as a word, a label the client draws next to names.
    #[error(
        "names cannot contain the word \"{word}\" (or a look-alike), because the app shows it next to names; choose a name without it"
    )]
    ReservedWord {
        /// The label the name contains or imitates.
        word: &'static str,
    },
}

// A name holding one could pass for someone else's status: "Victim (you)", "x host muted".
/// Labels the client draws next to names, which a display name may not contain as a word.
pub const RESERVED_WORDS: &[&str] = &["you", "host", "mod", "moderator", "muted", "invited"];

/// Characters that draw as nothing yet are not Default_Ignorable_Code_Point, so Unicode's
/// data does not flag them; both are common in "blank name" tricks.
const BLANK_GLYPHS: &[char] = &[
    '\u{2800}',  // BRAILLE PATTERN BLANK (So)
    '\u{1D159}', // MUSICAL SYMBOL NULL NOTEHEAD (So)
];

const ZWJ: char = '\u{200D}';
const VS15: char = '\u{FE0E}';
const VS16: char = '\u{FE0F}';

/// Writes a character as U+XXXX, the form error messages name code points in.
struct CodePoint(char);

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", u32::from(self.0))
    }
}

/// How a character may be treated, decided with its neighbours in view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Visible,
    Control,
    Invisible,
    PrivateUse,
    Unassigned,
}

fn category(c: char) -> GeneralCategory {
    CodePointMapData::<GeneralCategory>::new().get(c)
}

/// Invisible: Default_Ignorable_Code_Point (zero-width and bidi controls, fillers, variation
/// selectors, tags, soft hyphen...) or a known blank glyph.
fn is_invisible(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) || BLANK_GLYPHS.contains(&c)
}

fn is_pictographic(c: char) -> bool {
    CodePointSetData::new::<ExtendedPictographic>().contains(c)
        && category(c) != GeneralCategory::Unassigned
}

/// Whether `c` ends an emoji that a ZWJ may join to the next one: a pictograph, a skin-tone
/// modifier, or an emoji presentation selector that was itself accepted.
fn ends_joinable_emoji(c: char) -> bool {
    is_pictographic(c) || CodePointSetData::new::<EmojiModifier>().contains(c) || c == VS16
}

/// Classifies `c`, where `prev` is the preceding character if that one was `Visible`, and
/// `next` is the following character.
fn classify(c: char, prev: Option<char>, next: Option<char>) -> Class {
    match category(c) {
        GeneralCategory::Control
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => return Class::Control,
        GeneralCategory::PrivateUse => return Class::PrivateUse,
        GeneralCategory::Unassigned | GeneralCategory::Surrogate => return Class::Unassigned,
        _ => {}
    }
    // A ZWJ between two emoji only fuses them into one glyph (👩‍💻); it cannot hide or
    // reorder text, and refusing it would refuse what emoji pickers insert. Anywhere else it
    // is an invisible character like any other. The skeleton drops it, so 👩‍💻 and 👩💻
    // still count as the same name.
    if c == ZWJ && prev.is_some_and(ends_joinable_emoji) && next.is_some_and(is_pictographic) {
        return Class::Visible;
    }
    // VS15/VS16 right after an emoji only choose text or colour presentation (🎙️).
    if (c == VS15 || c == VS16)
        && prev.is_some_and(|p| CodePointSetData::new::<Emoji>().contains(p))
    {
        return Class::Visible;
    }
    if category(c) == GeneralCategory::Format || is_invisible(c) {
        return Class::Invisible;
    }
    Class::Visible
}

/// Runs `classify` over `text`, handing each character, its byte offset and its class to `f`
/// until `f` returns `false`.
fn scan(text: &str, mut f: impl FnMut(usize, char, Class) -> bool) {
    let mut chars = text.char_indices().peekable();
    let mut prev = None;
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let class = classify(c, prev, next);
        if !f(i, c, class) {
            return;
        }
        prev = (class == Class::Visible).then_some(c);
    }
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        // Writing to a String cannot fail.
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// Untrusted text made safe for one terminal or log line: hidden or interpreted characters escaped.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    // Controls, format characters, separators, private-use, unassigned and invisible
    // characters become `\u{…}` (newline, return and tab become `\n`, `\r`, `\t`), so a
    // hostile peer can neither drive the terminal (OSC 52 clipboard writes, title changes,
    // screen clears) nor hide or reorder text. Printable text comes back borrowed, so the
    // common case costs one scan. Emoji ZWJ sequences and VS15/VS16 after an emoji are kept
    // (see `classify`); emoji tag sequences (subdivision flags) are escaped, because tag
    // characters can smuggle hidden ASCII. Backslashes are not escaped: a peer can type text
    // that looks like an escape, but cannot hide anything that way.
    let mut first = None;
    scan(text, |i, _, class| {
        if class == Class::Visible {
            return true;
        }
        first = Some(i);
        false
    });
    let Some(first) = first else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    // Classify again from the start so ZWJ/VS context is the same as in the first pass.
    scan(text, |i, c, class| {
        if i >= first {
            if class == Class::Visible {
                out.push(c);
            } else {
                push_escaped(&mut out, c);
            }
        }
        true
    });
    Cow::Owned(out)
}

/// A display name or room title checked and normalised on the server, or why it is refused.
pub fn clean_name(text: &str, max_chars: usize, what: TextKind) -> Result<String, TextError> {
    // NFC first, so the length and every later check see the text as it will be stored.
    // Invisible characters are refused rather than dropped, so what the user typed is what
    // others see. The result passes through `terminal_safe` unchanged, and cleaning it again
    // gives it back unchanged.
    let nfc: String = text.nfc().collect();
    // Every kind of space (NBSP, ideographic, em...) becomes one ASCII space, so names that
    // differ only in spacing look, and are, the same. Other whitespace (tab, newline, U+2028)
    // is left for the control check below.
    let cleaned = collapse_spaces(&nfc);

    if cleaned.chars().all(|c| c == ' ' || is_invisible(c)) {
        return Err(TextError::Blank { what });
    }

    let mut refused = None;
    scan(&cleaned, |_, code_point, class| {
        refused = match class {
            Class::Visible => None,
            Class::Control => Some(TextError::Control { what, code_point }),
            Class::Invisible => Some(TextError::Invisible { what, code_point }),
            Class::PrivateUse => Some(TextError::PrivateUse { what, code_point }),
            Class::Unassigned => Some(TextError::Unassigned { what, code_point }),
        };
        refused.is_none()
    });
    if let Some(error) = refused {
        return Err(error);
    }

    let len = cleaned.chars().count();
    if len > max_chars {
        return Err(TextError::TooLong {
            what,
            max: max_chars,
            len,
        });
    }

    if what == TextKind::DisplayName
        && let Some(word) = reserved_word(&cleaned)
    {
        return Err(TextError::ReservedWord { word });
    }
    Ok(cleaned)
}

/// `text` trimmed, with every run of space separators (NBSP, ideographic, em…) made one
/// ASCII space.
fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.trim().chars() {
        if category(c) == GeneralCategory::SpaceSeparator {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// A chat line cleaned on the server: NFC, control, invisible and direction-changing
/// characters (bidi overrides, zero-width joiners outside emoji) dropped rather than refused
/// (a pasted line keeps its words), line breaks and tabs made spaces, runs of spaces made
/// one, private-use and unassigned characters dropped. Refused only when nothing visible is
/// left or the line is longer than `max_chars` after cleaning. The result passes through
/// `terminal_safe` unchanged.
pub fn clean_chat(text: &str, max_chars: usize) -> Result<String, TextError> {
    let what = TextKind::ChatLine;
    let nfc: String = text.nfc().collect();
    let mut kept = String::with_capacity(nfc.len());
    scan(&nfc, |_, c, class| {
        match class {
            Class::Visible => kept.push(c),
            // Line breaks and tabs separate words: keep the gap.
            Class::Control if c.is_whitespace() => kept.push(' '),
            _ => {}
        }
        true
    });
    let cleaned = collapse_spaces(&kept);
    // Dropping a character can make a new neighbour (a ZWJ left between two emoji after
    // an invisible between them went, a mark after a letter): clean until nothing changes.
    if terminal_safe(&cleaned) != cleaned || !unicode_normalization::is_nfc(&cleaned) {
        return clean_chat(&cleaned, max_chars);
    }
    if cleaned.chars().all(|c| c == ' ' || is_invisible(c)) {
        return Err(TextError::Blank { what });
    }
    let len = cleaned.chars().count();
    if len > max_chars {
        return Err(TextError::TooLong {
            what,
            max: max_chars,
            len,
        });
    }
    Ok(cleaned)
}

/// The first of [`RESERVED_WORDS`] that `name` contains as a whole word, compared by
/// [`skeleton`] so look-alikes ("Y0U", Cyrillic "уоu", "rnod") count.
fn reserved_word(name: &str) -> Option<&'static str> {
    // Diacritics are dropped rather than splitting words, so "yoú" still reads as "you".
    let key: String = skeleton(name)
        .chars()
        .filter(|&c| {
            !matches!(
                category(c),
                GeneralCategory::NonspacingMark
                    | GeneralCategory::SpacingMark
                    | GeneralCategory::EnclosingMark
            )
        })
        .collect();
    let words: Vec<&str> = key.split(|c: char| !c.is_alphanumeric()).collect();
    RESERVED_WORDS
        .iter()
        .copied()
        .find(|reserved| words.contains(&skeleton(reserved).as_str()))
}

/// A look-alike key: two display names with the same key may be mistaken for each other.
pub fn skeleton(name: &str) -> String {
    // UTS #39 confusable skeleton (`unicode_security::skeleton`: NFD, drop
    // Default_Ignorable code points, map each character to its prototype, NFD again), made
    // case-insensitive. The crate's skeleton is case-sensitive and maps by shape: Cyrillic and
    // Greek capitals go to Latin capitals, `1`, `|` and capital `I` go to `l`, `0` goes to
    // capital `O`, `m` goes to `rn`, but `i` stays `i` and `o` stays `o`. Lowercasing alone
    // would part "Ian" from "lan"; the skeleton alone would part "Ada" from "ada". So: skeleton,
    // lowercase, skeleton again (catches "rn"/"m" and lowercase look-alikes), then uppercase
    // and skeleton once more (catches `i`/`I`/`l`/`1`, which only meet as capitals), ending
    // in lowercase. This errs towards collisions ("ian" and "lan" share a key), which costs
    // at most a refused name in one room. The key is for comparing, not for showing.
    let shape = |s: &str| unicode_security::skeleton(s).collect::<String>();
    let lower = shape(&shape(name).to_lowercase());
    shape(&lower.to_uppercase()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 32;

    fn name(text: &str) -> Result<String, TextError> {
        clean_name(text, MAX, TextKind::DisplayName)
    }

    fn title(text: &str) -> Result<String, TextError> {
        clean_name(text, MAX, TextKind::RoomTitle)
    }

    fn is_escaped_category(c: char) -> bool {
        matches!(
            category(c),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::PrivateUse
                | GeneralCategory::Unassigned
                | GeneralCategory::Surrogate
        )
    }

    /// The one Cf character output may keep: a ZWJ with a pictograph on both sides, or a
    /// skin tone or VS16 before it.
    fn is_emoji_joiner(chars: &[char], i: usize) -> bool {
        chars[i] == ZWJ
            && i > 0
            && ends_joinable_emoji(chars[i - 1])
            && chars.get(i + 1).is_some_and(|&n| is_pictographic(n))
    }

    // ---- terminal_safe ----

    #[test]
    fn terminal_escape_sequences_are_shown_not_run() {
        assert_eq!(
            terminal_safe("\u{1b}]0;title\u{7}"),
            "\\u{1b}]0;title\\u{7}"
        );
        assert_eq!(
            terminal_safe("\u{1b}]52;c;aGVsbG8=\u{7}"),
            "\\u{1b}]52;c;aGVsbG8=\\u{7}"
        );
        assert_eq!(terminal_safe("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(terminal_safe("a\u{7f}b"), "a\\u{7f}b");
    }

    #[test]
    fn bidi_and_zero_width_characters_are_shown() {
        assert_eq!(terminal_safe("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(terminal_safe("a\u{200b}b"), "a\\u{200b}b");
        assert_eq!(terminal_safe("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(
            terminal_safe("\u{200e}\u{200f}\u{61c}"),
            "\\u{200e}\\u{200f}\\u{61c}"
        );
        assert_eq!(terminal_safe("\u{feff}\u{2060}"), "\\u{feff}\\u{2060}");
        assert_eq!(terminal_safe("hi\u{e0041}"), "hi\\u{e0041}");
        assert_eq!(terminal_safe("\u{3164}"), "\\u{3164}");
        assert_eq!(terminal_safe("\u{2800}"), "\\u{2800}");
        assert_eq!(terminal_safe("a\u{fe0f}"), "a\\u{fe0f}");
        // Format characters that are not Default_Ignorable are escaped too.
        assert_eq!(terminal_safe("\u{600}1\u{fff9}"), "\\u{600}1\\u{fff9}");
    }

    #[test]
    fn line_breaks_separators_private_use_and_unassigned_are_shown() {
        assert_eq!(terminal_safe("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(terminal_safe("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
        assert_eq!(terminal_safe("\u{e000}"), "\\u{e000}");
        assert_eq!(terminal_safe("\u{378}"), "\\u{378}");
    }

    #[test]
    fn printable_text_is_borrowed_unchanged() {
        for text in [
            "Ada Lovelace",
            "Café déjà vu",
            "Cafe\u{301}",
            "李小龍",
            "محمد",
            "🎙️ Talk",
            "👩‍💻 and 👍🏽 and 1️⃣ and 🇬🇧 and ❤️‍🔥",
            "a\u{a0}b\u{3000}c",
            "C:\\path \\u{202e}",
            "",
        ] {
            assert!(
                matches!(terminal_safe(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_zwj_outside_an_emoji_sequence_is_shown() {
        assert_eq!(terminal_safe("a\u{200d}b"), "a\\u{200d}b");
        assert_eq!(terminal_safe("👩\u{200d}"), "👩\\u{200d}");
        assert_eq!(terminal_safe("\u{200d}💻"), "\\u{200d}💻");
    }

    // ---- clean_name ----

    #[test]
    fn bidi_and_zero_width_characters_are_refused() {
        assert_eq!(
            name("\u{202e}evil"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{202e}'
            })
        );
        assert_eq!(
            name("a\u{200b}b"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{200b}'
            })
        );
        assert_eq!(
            title("Talk\u{e0041}"),
            Err(TextError::Invisible {
                what: TextKind::RoomTitle,
                code_point: '\u{e0041}'
            })
        );
        assert_eq!(
            name("Ada\u{3164}"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{3164}'
            })
        );
        assert_eq!(
            name("Ada\u{2800}x"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{2800}'
            })
        );
        assert_eq!(
            name("a\u{34f}b"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{34f}'
            })
        );
        assert_eq!(
            name("a\u{fe0f}"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{fe0f}'
            })
        );
        assert_eq!(
            name("\u{600}12"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{600}'
            })
        );
        assert_eq!(
            name("a\u{200d}b"),
            Err(TextError::Invisible {
                what: TextKind::DisplayName,
                code_point: '\u{200d}'
            })
        );
    }

    #[test]
    fn blank_text_is_refused() {
        for text in [
            "",
            "  ",
            "\u{3164}",
            "\u{3164}\u{3164}",
            " \u{200b} ",
            "\u{2800}",
            "\u{a0}\u{3000}",
        ] {
            assert_eq!(
                name(text),
                Err(TextError::Blank {
                    what: TextKind::DisplayName
                }),
                "{text:?}"
            );
            assert_eq!(
                title(text),
                Err(TextError::Blank {
                    what: TextKind::RoomTitle
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn controls_are_refused() {
        for (text, c) in [
            ("\u{1b}]0;title\u{7}", '\u{1b}'),
            ("\u{1b}]52;c;aGVsbG8=\u{7}", '\u{1b}'),
            ("\u{1b}[2J", '\u{1b}'),
            ("\u{9b}31m", '\u{9b}'),
            ("a\nb", '\n'),
            ("a\tb", '\t'),
            ("a\u{2028}b", '\u{2028}'),
            ("a\u{2029}b", '\u{2029}'),
            ("\u{7}", '\u{7}'),
        ] {
            assert_eq!(
                name(text),
                Err(TextError::Control {
                    what: TextKind::DisplayName,
                    code_point: c
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn private_use_and_unassigned_are_refused() {
        assert_eq!(
            name("\u{e000}"),
            Err(TextError::PrivateUse {
                what: TextKind::DisplayName,
                code_point: '\u{e000}'
            })
        );
        assert_eq!(
            title("x\u{f0000}"),
            Err(TextError::PrivateUse {
                what: TextKind::RoomTitle,
                code_point: '\u{f0000}'
            })
        );
        assert_eq!(
            name("a\u{378}"),
            Err(TextError::Unassigned {
                what: TextKind::DisplayName,
                code_point: '\u{378}'
            })
        );
    }

    #[test]
    fn text_is_normalised_trimmed_and_collapsed() {
        assert_eq!(name("Cafe\u{301}").as_deref(), Ok("Café"));
        assert_eq!(name("  Ada   Lovelace \n").as_deref(), Ok("Ada Lovelace"));
        assert_eq!(
            name("Ada\u{a0}\u{3000}\u{2003}King").as_deref(),
            Ok("Ada King")
        );
    }

    #[test]
    fn ordinary_names_and_titles_are_accepted() {
        for text in [
            "Ada (bot)",
            "Grace (bot)",
            "Ghost",
            "Hostel",
            "李小龍",
            "محمد",
            "Zoë",
            "👩‍💻 Ada",
        ] {
            assert_eq!(name(text).as_deref(), Ok(text), "{text:?}");
        }
        assert_eq!(title("🎙️ Talk").as_deref(), Ok("🎙️ Talk"));
        assert_eq!(
            title("Victim (you) and the host, muted").as_deref(),
            Ok("Victim (you) and the host, muted")
        );
    }

    #[test]
    fn length_is_counted_in_characters_after_normalisation() {
        assert_eq!(
            clean_name("Cafe\u{301}", 4, TextKind::DisplayName).as_deref(),
            Ok("Café")
        );
        let exact = "é".repeat(MAX);
        assert_eq!(name(&exact).as_deref(), Ok(exact.as_str()));
        assert_eq!(
            name(&"é".repeat(MAX + 1)),
            Err(TextError::TooLong {
                what: TextKind::DisplayName,
                max: MAX,
                len: MAX + 1
            })
        );
        assert_eq!(
            title(&"李".repeat(MAX + 1)),
            Err(TextError::TooLong {
                what: TextKind::RoomTitle,
                max: MAX,
                len: MAX + 1
            })
        );
    }

    #[test]
    fn names_imitating_client_labels_are_refused() {
        for (text, word) in [
            ("Victim (you)", "you"),
            ("x host muted", "host"),
            ("Bob [MOD]", "mod"),
            ("Eve moderator", "moderator"),
            ("Mallory, invited", "invited"),
            ("Y0U", "you"),
            ("Bob (уоu)", "you"),
            ("Bob rnod", "mod"),
            ("Bob (yoú)", "you"),
            ("Bob ⠀host", "host"),
        ] {
            let refused = name(text);
            if text.contains('\u{2800}') {
                // The blank glyph is refused first; either way the name does not get through.
                assert!(refused.is_err(), "{text:?}");
            } else {
                assert_eq!(refused, Err(TextError::ReservedWord { word }), "{text:?}");
            }
        }
    }

    #[test]
    fn messages_say_what_is_wrong_and_what_to_do() {
        let message =
            |r: Result<String, TextError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message(name("\u{202e}evil")),
            "names cannot contain invisible or direction-changing characters (U+202E); \
             type the name again without them"
        );
        assert_eq!(
            message(title("a\u{1b}")),
            "room titles cannot contain control characters, tabs or line breaks (U+001B); \
             type the room title on one line without them"
        );
        assert_eq!(
            message(name("\u{e0041}x")),
            "names cannot contain invisible or direction-changing characters (U+E0041); \
             type the name again without them"
        );
        assert!(message(name("a\u{378}")).contains("U+0378"));
        assert!(message(name("\u{e000}")).contains("U+E000"));
        assert!(message(name("")).contains("blank"));
        assert!(message(name(&"x".repeat(MAX + 1))).contains("at most 32"));
        assert!(message(name("Victim (you)")).contains("\"you\""));
    }

    // ---- skeleton ----

    #[test]
    fn look_alike_names_share_a_skeleton() {
        let same = [
            ("Ada", "ada"),
            ("Ada", "АDA"), // Cyrillic А
            ("Ada", "Αda"), // Greek Α
            ("Ada", "ADA"),
            ("Ada", "Ａda"), // fullwidth
            ("Ada", "𝐀da"),  // mathematical bold
            ("Ada", "A\u{200b}da"),
            ("m", "rn"),
            ("Sam", "Sarn"),
            ("l", "1"),
            ("l", "I"),
            ("Bill", "BiII"),
            ("Bill", "B1ll"),
            ("bob", "b0b"),
            ("👩‍💻", "👩💻"),
        ];
        for (a, b) in same {
            assert_eq!(skeleton(a), skeleton(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn different_names_have_different_skeletons() {
        for (a, b) in [
            ("Ada", "Adam"),
            ("Ada", "Ida"),
            ("Bob", "Rob"),
            ("Ghost", "host"),
            ("李", "季"),
        ] {
            assert_ne!(skeleton(a), skeleton(b), "{a:?} vs {b:?}");
        }
    }

    // ---- properties ----

    /// Characters an attacker would try, mixed with ordinary ones.
    const HOSTILE: &[char] = &[
        '\u{0}',
        '\u{7}',
        '\t',
        '\n',
        '\r',
        '\u{1b}',
        '\u{7f}',
        '\u{85}',
        '\u{9b}',
        '\u{ad}',
        '\u{34f}',
        '\u{61c}',
        '\u{115f}',
        '\u{1160}',
        '\u{180e}',
        '\u{200b}',
        '\u{200c}',
        '\u{200d}',
        '\u{200e}',
        '\u{200f}',
        '\u{2028}',
        '\u{2029}',
        '\u{202a}',
        '\u{202e}',
        '\u{2060}',
        '\u{2066}',
        '\u{2069}',
        '\u{3164}',
        '\u{2800}',
        '\u{fe0e}',
        '\u{fe0f}',
        '\u{feff}',
        '\u{ffa0}',
        '\u{e0001}',
        '\u{e0041}',
        '\u{e007f}',
        '\u{e0100}',
        '\u{e000}',
        '\u{f8ff}',
        '\u{378}',
        '\u{fffe}',
        '\u{10ffff}',
        '\u{301}',
        '\u{a0}',
        '\u{3000}',
        ' ',
        '\u{1f469}',
        '\u{1f4bb}',
        '\u{1f3fd}',
        '\u{2764}',
        'a',
        'e',
        'I',
        '1',
        'n',
        'r',
        'm',
        '(',
        ')',
    ];

    fn hostile_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![any::<char>(), prop::sample::select(HOSTILE)],
            0..24,
        )
        .prop_map(String::from_iter)
    }

    /// Printable pieces: ranges of letters, digits, punctuation, spaces, marks, CJK and
    /// emoji, plus whole emoji sequences.
    fn printable_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            prop::char::range(' ', '~').prop_map(String::from),
            prop::char::range('\u{c0}', '\u{17f}').prop_map(String::from),
            prop::char::range('\u{3b1}', '\u{3c9}').prop_map(String::from),
            prop::char::range('\u{410}', '\u{44f}').prop_map(String::from),
            prop::char::range('\u{621}', '\u{64a}').prop_map(String::from),
            prop::char::range('\u{300}', '\u{34e}').prop_map(String::from),
            prop::char::range('\u{2010}', '\u{2027}').prop_map(String::from),
            prop::char::range('\u{3041}', '\u{3096}').prop_map(String::from),
            prop::char::range('\u{4e00}', '\u{9fff}').prop_map(String::from),
            prop::char::range('\u{ac00}', '\u{d7a3}').prop_map(String::from),
            prop::char::range('\u{1f300}', '\u{1f64f}').prop_map(String::from),
            prop::sample::select(
                &[
                    "\u{a0}",
                    "\u{3000}",
                    "¡",
                    "¿",
                    "«",
                    "»",
                    "🎙️",
                    "👩‍💻",
                    "❤️‍🔥",
                    "👍🏽",
                    "1️⃣",
                    "🇬🇧",
                    "🏳️‍🌈",
                ][..]
            )
            .prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn terminal_safe_output_has_nothing_hidden(text in hostile_text()) {
            let safe = terminal_safe(&text);
            let chars: Vec<char> = safe.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                prop_assert!(
                    !is_escaped_category(c) || is_emoji_joiner(&chars, i),
                    "{:?} kept U+{:04X}", text, u32::from(c)
                );
            }
        }

        #[test]
        fn terminal_safe_keeps_printable_text(text in printable_text()) {
            prop_assert!(matches!(terminal_safe(&text), Cow::Borrowed(t) if t == text));
        }

        #[test]
        fn clean_name_output_is_clean_and_stable(
            text in prop_oneof![hostile_text(), printable_text()],
            max in 1usize..40,
            title in any::<bool>(),
        ) {
            let what = if title { TextKind::RoomTitle } else { TextKind::DisplayName };
            if let Ok(clean) = clean_name(&text, max, what) {
                prop_assert!(unicode_normalization::is_nfc(&clean));
                prop_assert!(!clean.is_empty());
                prop_assert_eq!(clean.trim(), clean.as_str());
                prop_assert!(clean.chars().count() <= max);
                let chars: Vec<char> = clean.chars().collect();
                for (i, &c) in chars.iter().enumerate() {
                    prop_assert!(!is_escaped_category(c) || is_emoji_joiner(&chars, i));
                    prop_assert!(c == ' ' || !c.is_whitespace());
                }
                prop_assert!(matches!(terminal_safe(&clean), Cow::Borrowed(_)));
                prop_assert_eq!(clean_name(&clean, max, what), Ok(clean.clone()));
            }
        }
    }

    #[test]
    fn chat_lines_are_cleaned_not_refused() {
        // A bidi override (the "evil" trick), zero-width space, a bell and a line break.
        let line = clean_chat("hi\u{202E}dlrow\u{200B} there\u{7}\nall\t ok", 280).expect("cleans");
        assert_eq!(line, "hidlrow there all ok");
        assert_eq!(terminal_safe(&line), line);
        // Emoji sequences stay whole.
        assert_eq!(
            clean_chat(" 👩\u{200D}💻 🎙\u{FE0F} ", 280).expect("cleans"),
            "👩\u{200D}💻 🎙\u{FE0F}"
        );
        // A ZWJ left between two emoji once an invisible between them goes is dropped too.
        let line = clean_chat("👩\u{200B}\u{200D}💻", 280).expect("cleans");
        // A dropped character between a letter and its accent: the result is NFC.
        assert_eq!(
            clean_chat("e\u{200B}\u{301}", 280).expect("cleans"),
            "\u{e9}"
        );
        assert_eq!(terminal_safe(&line), line);
        assert!(matches!(
            clean_chat("\u{202E}\u{200B} \n", 280),
            Err(TextError::Blank { .. })
        ));
        let err = clean_chat(&"a".repeat(281), 280).expect_err("refused");
        assert!(err.to_string().contains("at most 280"), "{err}");
        assert_eq!(
            clean_chat(&"a".repeat(280), 280).expect("cleans").len(),
            280
        );
    }

    proptest::proptest! {
        #[test]
        fn cleaned_chat_is_terminal_safe_and_stable(text in hostile_text()) {
            if let Ok(line) = clean_chat(&text, 280) {
                proptest::prop_assert_eq!(terminal_safe(&line).into_owned(), line.clone());
                proptest::prop_assert_eq!(clean_chat(&line, 280).expect("cleans"), line);
            }
        }
    }
}
