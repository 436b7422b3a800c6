//! Account handles (`@ada`): the name an account is known by on a server.
//!
//! A handle is 3 to 20 ASCII letters, digits and `_`. People may type it with a leading `@`;
//! [`Handle::parse`] accepts that and strips it, the wire and the store carry the bare
//! spelling (`"ada"`), and [`Display`](std::fmt::Display) puts the `@` back. The alphabet is
//! ASCII so that no other script's look-alike (Cyrillic `а` for Latin `a`) gets in at all;
//! display names, which may be in any script, have their own key in
//! [`text::skeleton`](super::text::skeleton).
//!
//! A handle keeps its case for showing, but a server holds at most one handle per
//! [`skeleton`]: the handle lowercased, then folded so that what looks alike in common
//! terminal fonts is spelled alike:
//!
//! ```text
//! step  from   to   applied
//!    1  A-Z    a-z  per character
//!    2  0      o    per character
//!       1, i   l
//!    3  rn     m    left to right, greedily
//!       vv     w
//!       cl     d
//! ```
//!
//! So `Ada`, `ADA` and `ada` are one handle, as are `rnary` and `mary`, `bi11` and `bill`,
//! `vvill` and `will`. Step 3 consumes what it matches, so `vvv` is `wv` and `rnn` is `mn`;
//! coming after step 2 it also catches `c1` and `ci`. `_` is kept: it is visible. The fold is
//! deliberately coarse: a false collision only makes someone pick another handle, a missed
//! one lets an impostor in.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The fewest characters in a handle (the `@` not counted).
pub const MIN_HANDLE_CHARS: usize = 3;
/// The most characters in a handle (the `@` not counted).
pub const MAX_HANDLE_CHARS: usize = 20;

/// The most characters of `suffix` that [`handle_from_name`] keeps.
const MAX_SUFFIX_CHARS: usize = 8;

/// A valid handle as the user spelled it (case kept), without the `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Handle(String);

/// Why a string is not a handle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandleError {
    #[error("a handle has at least 3 characters")]
    TooShort,
    #[error("a handle has at most 20 characters")]
    TooLong,
    #[error("a handle has only ASCII letters, digits and _ (not {0:?})")]
    BadCharacter(char),
}

impl Handle {
    /// Checks user input: surrounding whitespace is trimmed and one leading `@` stripped.
    /// A character outside the alphabet is reported before a wrong length.
    pub fn parse(input: &str) -> Result<Handle, HandleError> {
        let text = input.trim();
        let text = text.strip_prefix('@').unwrap_or(text);
        if let Some(bad) = text.chars().find(|&c| !is_handle_char(c)) {
            return Err(HandleError::BadCharacter(bad));
        }
        // Only ASCII is left, so bytes are characters.
        match text.len() {
            n if n < MIN_HANDLE_CHARS => Err(HandleError::TooShort),
            n if n > MAX_HANDLE_CHARS => Err(HandleError::TooLong),
            _ => Ok(Handle(text.to_owned())),
        }
    }

    /// The handle as spelled, without the `@`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key two handles collide on: see [`skeleton`].
    pub fn key(&self) -> String {
        skeleton(&self.0)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl TryFrom<String> for Handle {
    type Error = HandleError;

    fn try_from(text: String) -> Result<Handle, HandleError> {
        Handle::parse(&text)
    }
}

impl From<Handle> for String {
    fn from(handle: Handle) -> String {
        handle.0
    }
}

fn is_handle_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The form two handles are compared in: lowercase, then look-alikes folded to one letter
/// (the table is in the module documentation). Characters that cannot occur in a handle
/// pass through.
pub fn skeleton(handle: &str) -> String {
    // Idempotent: steps 1 and 2 leave no ASCII capital, `0`, `1` or `i`, and step 3 writes only
    // `m`, `w` and `d`, so steps 1 and 2 change nothing on a second run. Step 3 cannot leave
    // a pair behind either: `m`, `w` and `d` are in no pair, so a pair in the output would be
    // two copied characters, adjacent in the input too, and the first was copied only because
    // they were not a pair.
    let chars: Vec<char> = handle
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            '0' => 'o',
            '1' | 'i' => 'l',
            c => c,
        })
        .collect();
    let mut out = String::with_capacity(handle.len());
    let mut rest = chars.as_slice();
    while let [first, tail @ ..] = rest {
        if let [second, after @ ..] = tail
            && let Some(folded) = fold_pair(*first, *second)
        {
            out.push(folded);
            rest = after;
        } else {
            out.push(*first);
            rest = tail;
        }
    }
    out
}

/// The one letter a two-letter look-alike is folded to.
fn fold_pair(first: char, second: char) -> Option<char> {
    match (first, second) {
        ('r', 'n') => Some('m'),
        ('v', 'v') => Some('w'),
        ('c', 'l') => Some('d'),
        _ => None,
    }
}

/// A handle made from a display name: ASCII letters and digits kept, everything else `_`
/// (runs collapsed, trimmed), cut to fit with room for `suffix`, padded with `_` up to 3
/// characters. An empty result becomes `user`. `suffix` is meant to be handle characters,
/// at most 8; others become `_` and the rest is cut off.
pub fn handle_from_name(name: &str, suffix: &str) -> Handle {
    let suffix: String = suffix
        .chars()
        .take(MAX_SUFFIX_CHARS)
        .map(|c| if is_handle_char(c) { c } else { '_' })
        .collect();
    let mut base = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        // Leading `_` dropped, runs collapsed.
        if c == '_' && (base.is_empty() || base.ends_with('_')) {
            continue;
        }
        base.push(c);
    }
    // All ASCII, so any byte length is a character boundary.
    base.truncate(MAX_HANDLE_CHARS.saturating_sub(suffix.len()));
    let mut text = base.trim_end_matches('_').to_owned();
    if text.is_empty() {
        text.push_str("user");
    }
    text.push_str(&suffix);
    while text.len() < MIN_HANDLE_CHARS {
        text.push('_');
    }
    debug_assert!(Handle::parse(&text).is_ok(), "{text:?}");
    Handle(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn handle(text: &str) -> Handle {
        Handle::parse(text).expect("a valid handle")
    }

    #[test]
    fn parse_checks_length_and_alphabet() {
        assert_eq!(Handle::parse("ab"), Err(HandleError::TooShort));
        assert_eq!(handle("abc").as_str(), "abc");
        assert_eq!(handle(&"a".repeat(20)).as_str(), "a".repeat(20));
        assert_eq!(Handle::parse(&"a".repeat(21)), Err(HandleError::TooLong));
        assert_eq!(Handle::parse(""), Err(HandleError::TooShort));
        assert_eq!(Handle::parse("@ab"), Err(HandleError::TooShort));
        assert_eq!(Handle::parse("ada!"), Err(HandleError::BadCharacter('!')));
        let cyrillic_a = Handle::parse("\u{430}da");
        assert_eq!(cyrillic_a, Err(HandleError::BadCharacter('\u{430}')));
        assert_eq!(Handle::parse("ad a"), Err(HandleError::BadCharacter(' ')));
        assert_eq!(Handle::parse("@@ada"), Err(HandleError::BadCharacter('@')));
    }

    #[test]
    fn parse_trims_and_strips_one_at_and_keeps_case() {
        assert_eq!(handle("@ada").as_str(), "ada");
        assert_eq!(handle("  @Ada_L \n").as_str(), "Ada_L");
        assert_eq!(handle("@Ada").to_string(), "@Ada");
        assert_eq!(
            HandleError::BadCharacter('!').to_string(),
            "a handle has only ASCII letters, digits and _ (not '!')"
        );
    }

    #[test]
    fn case_and_confusables_collide() {
        assert_eq!(handle("Ada").key(), "ada");
        for (a, b) in [
            ("Ada", "ADA"),
            ("rnary", "mary"),
            ("bi11", "bill"),
            ("p0ll", "poll"),
            ("vvill", "will"),
            ("clan", "dan"),
            ("C1an", "dan"),
        ] {
            assert_eq!(handle(a).key(), handle(b).key(), "{a} and {b}");
        }
    }

    #[test]
    fn distinct_handles_do_not_collide() {
        for (a, b) in [("ada", "ida"), ("mary", "nary"), ("vvv", "www")] {
            assert_ne!(handle(a).key(), handle(b).key(), "{a} and {b}");
        }
    }

    #[test]
    fn serde_is_the_bare_handle_and_validates() {
        let json = serde_json::to_string(&handle("@Ada")).expect("serializes");
        assert_eq!(json, "\"Ada\"");
        let back: Handle = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, handle("Ada"));
        assert!(serde_json::from_str::<Handle>("\"a!\"").is_err());
    }

    #[test]
    fn handle_from_name_examples() {
        assert_eq!(handle_from_name("Ada L.", "").as_str(), "Ada_L");
        assert_eq!(handle_from_name("Zoë", "2").as_str(), "Zo2");
        assert_eq!(handle_from_name("", "").as_str(), "user");
        assert_eq!(handle_from_name("  ", "7").as_str(), "user7");
        assert_eq!(handle_from_name("Al", "").as_str(), "Al_");
        assert_eq!(handle_from_name("ada", "!x").as_str(), "ada_x");
        assert_eq!(
            handle_from_name("Augusta Ada King, Countess of Lovelace", "123").as_str(),
            "Augusta_Ada_King123"
        );
    }

    proptest! {
        #[test]
        fn handle_from_name_is_always_valid(name in any::<String>(), suffix in any::<String>()) {
            let made = handle_from_name(&name, "7");
            prop_assert_eq!(Handle::parse(made.as_str()), Ok(made.clone()));
            let made = handle_from_name(&name, &suffix);
            prop_assert_eq!(Handle::parse(made.as_str()), Ok(made.clone()));
        }

        #[test]
        fn skeleton_is_idempotent(
            text in prop_oneof!["[A-Za-z0-9_]{3,20}", "[rnvcliIL01mwd_]{3,20}"]
        ) {
            let once = handle(&text).key();
            prop_assert_eq!(skeleton(&once), once.clone());
        }
    }
}
