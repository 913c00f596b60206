//! The HTML standard's tokenizer for the states ordinary pages use, over a `&str` in place.
//!
//! It follows the standard (and html5ever, the DOM engine's tokenizer) state by state: tag and
//! attribute syntax, character references (html5ever's entity table, so the two engines
//! decode alike), comments, doctypes, CDATA in foreign content, and the RCDATA, RAWTEXT and
//! script-data states the tree builder switches on. Text without character references is
//! borrowed from the page. The caller normalises newlines first; pages with NUL characters
//! are not tokenized here (the DOM engine takes them).

use std::borrow::Cow;

use html5ever::data::{C1_REPLACEMENTS, NAMED_ENTITIES};
use memchr::{memchr, memchr2};

/// A doctype's effect on the document's quirks mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quirks {
    /// `<!DOCTYPE html>`.
    No,
    /// A doctype that sets quirks mode (or none at all).
    Yes,
    /// A legacy doctype this tokenizer does not classify.
    Unknown,
}

/// Raw text states the tree builder switches to after some start tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawKind {
    /// `title`, `textarea`: character references decoded.
    Rcdata,
    /// `style`, `xmp`, `iframe`, `noembed`, `noframes`, `noscript`.
    Rawtext,
    /// `script`, with its escape states.
    Script,
}

/// An attribute as written (name lowercased, value decoded).
#[derive(Debug, Clone)]
pub(crate) struct RawAttr<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
}

/// One token.
#[derive(Debug)]
pub(crate) enum Token<'a> {
    /// A start tag; its attributes are in [`Tokenizer::attrs`].
    Start {
        name: Cow<'a, str>,
        self_closing: bool,
    },
    End {
        name: Cow<'a, str>,
    },
    Text(Cow<'a, str>),
    Comment,
    Doctype(Quirks),
    Eof,
}

pub(crate) struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    /// The attributes of the last start tag.
    pub(crate) attrs: Vec<RawAttr<'a>>,
    /// Set by the tree builder after a start tag that switches to a raw text state.
    raw: Option<(RawKind, &'static str)>,
    /// The end tag (or end of input) that follows raw text already returned.
    pending: Option<Token<'a>>,
}

const fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0C' | b' ')
}

impl<'a> Tokenizer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            attrs: Vec::new(),
            raw: None,
            pending: None,
        }
    }

    /// The next token is raw text of `kind`, up to the end tag `name` (the element just opened).
    pub(crate) fn switch_to_raw(&mut self, kind: RawKind, name: &'static str) {
        self.raw = Some((kind, name));
    }

    /// The input not read yet.
    pub(crate) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// The next token; `cdata` when the current node is foreign (CDATA sections are text).
    pub(crate) fn next_token(&mut self, cdata: bool) -> Token<'a> {
        if let Some(token) = self.pending.take() {
            return token;
        }
        if let Some((kind, name)) = self.raw.take() {
            return self.raw_text(kind, name);
        }
        let bytes = self.src.as_bytes();
        loop {
            if self.pos >= bytes.len() {
                return Token::Eof;
            }
            if bytes[self.pos] != b'<' || !self.starts_markup(self.pos) {
                return Token::Text(self.text());
            }
            if let Some(token) = self.markup(cdata) {
                return token;
            }
        }
    }

    /// True when the `<` at `at` starts markup (a tag, end tag, comment, doctype, ...) rather
    /// than being a character of text.
    fn starts_markup(&self, at: usize) -> bool {
        match self.src.as_bytes().get(at + 1) {
            Some(b) if b.is_ascii_alphabetic() => true,
            Some(b'!' | b'?') => true,
            // `</` at the end of input is text; `</>` and `</x` are markup.
            Some(b'/') => at + 2 < self.src.len(),
            _ => false,
        }
    }

    /// Text up to the next markup, character references decoded.
    fn text(&mut self) -> Cow<'a, str> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut copied = start;
        let mut at = start;
        loop {
            let Some(found) = memchr2(b'<', b'&', &bytes[at..]).map(|i| at + i) else {
                at = bytes.len();
                break;
            };
            if bytes[found] == b'<' {
                if found > start && self.starts_markup(found) {
                    at = found;
                    break;
                }
                at = found + 1;
                continue;
            }
            let out = owned.get_or_insert_with(String::new);
            out.push_str(&self.src[copied..found]);
            let consumed = char_ref(self.src, found + 1, false, out);
            at = found + 1 + consumed;
            copied = at;
        }
        self.pos = at;
        match owned {
            None => Cow::Borrowed(&self.src[start..at]),
            Some(mut out) => {
                out.push_str(&self.src[copied..at]);
                Cow::Owned(out)
            }
        }
    }

    /// Markup at `self.pos` (a `<` that starts it); `None` when it produces no token.
    fn markup(&mut self, cdata: bool) -> Option<Token<'a>> {
        let bytes = self.src.as_bytes();
        let at = self.pos;
        match bytes[at + 1] {
            b'!' => Some(self.declaration(cdata)),
            b'?' => {
                self.pos = self.bogus_comment_end(at + 1);
                Some(Token::Comment)
            }
            b'/' => match bytes[at + 2] {
                b if b.is_ascii_alphabetic() => {
                    self.pos = at + 2;
                    match self.tag(false) {
                        Some((name, _)) => Some(Token::End { name }),
                        None => Some(Token::Eof),
                    }
                }
                b'>' => {
                    self.pos = at + 3;
                    None
                }
                _ => {
                    self.pos = self.bogus_comment_end(at + 2);
                    Some(Token::Comment)
                }
            },
            _ => {
                self.pos = at + 1;
                self.attrs.clear();
                match self.tag(true) {
                    Some((name, self_closing)) => Some(Token::Start { name, self_closing }),
                    None => Some(Token::Eof),
                }
            }
        }
    }

    /// `<!...`: a comment, a doctype, a CDATA section (foreign content) or a bogus comment.
    fn declaration(&mut self, cdata: bool) -> Token<'a> {
        let rest = &self.src.as_bytes()[self.pos + 2..];
        if rest.starts_with(b"--") {
            self.pos = comment_end(self.src.as_bytes(), self.pos + 4);
            return Token::Comment;
        }
        if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"doctype") {
            let start = self.pos + 9;
            let (end, quirks) = doctype(self.src.as_bytes(), start);
            self.pos = end;
            return Token::Doctype(quirks);
        }
        if cdata && rest.starts_with(b"[CDATA[") {
            let start = self.pos + 9;
            let end = memchr::memmem::find(&self.src.as_bytes()[start..], b"]]>")
                .map_or(self.src.len(), |i| start + i);
            self.pos = (end + 3).min(self.src.len());
            return Token::Text(Cow::Borrowed(&self.src[start..end]));
        }
        self.pos = self.bogus_comment_end(self.pos + 2);
        Token::Comment
    }

    /// The position after a bogus comment that starts at `from`.
    fn bogus_comment_end(&self, from: usize) -> usize {
        memchr(b'>', &self.src.as_bytes()[from..]).map_or(self.src.len(), |i| from + i + 1)
    }

    /// A tag name and its attributes, from `self.pos` (just after `<` or `</`). `None` when
    /// the input ends inside the tag (the standard drops such a tag).
    fn tag(&mut self, start: bool) -> Option<(Cow<'a, str>, bool)> {
        let bytes = self.src.as_bytes();
        let name_start = self.pos;
        let mut at = name_start;
        while at < bytes.len() && !matches!(bytes[at], b'\t' | b'\n' | b'\x0C' | b' ' | b'/' | b'>')
        {
            at += 1;
        }
        let name = lowercase(&self.src[name_start..at]);
        self.pos = at;
        let self_closing = self.attributes(start)?;
        Some((name, self_closing))
    }

    /// The attributes of a tag up to its `>`; they are kept for start tags. Returns the
    /// self-closing flag, or `None` at the end of input.
    fn attributes(&mut self, keep: bool) -> Option<bool> {
        let bytes = self.src.as_bytes();
        let first = self.attrs.len();
        let mut at = self.pos;
        loop {
            // Before attribute name (and after a value).
            while at < bytes.len() && is_space(bytes[at]) {
                at += 1;
            }
            match bytes.get(at)? {
                b'>' => {
                    self.pos = at + 1;
                    return Some(false);
                }
                b'/' => {
                    at += 1;
                    match bytes.get(at)? {
                        b'>' => {
                            self.pos = at + 1;
                            return Some(true);
                        }
                        _ => continue,
                    }
                }
                _ => {}
            }
            // Attribute name: the first character is taken whatever it is (even `=`).
            let name_start = at;
            at += 1;
            while at < bytes.len()
                && !matches!(
                    bytes[at],
                    b'\t' | b'\n' | b'\x0C' | b' ' | b'/' | b'>' | b'='
                )
            {
                at += 1;
            }
            let name = lowercase(&self.src[name_start..at]);
            // After attribute name.
            while at < bytes.len() && is_space(bytes[at]) {
                at += 1;
            }
            let mut value = Cow::Borrowed("");
            if bytes.get(at) == Some(&b'=') {
                at += 1;
                while at < bytes.len() && is_space(bytes[at]) {
                    at += 1;
                }
                match bytes.get(at) {
                    Some(&quote @ (b'"' | b'\'')) => {
                        let start = at + 1;
                        let end = start + memchr(quote, &bytes[start..])?;
                        value = attribute_value(self.src, start, end);
                        at = end + 1;
                    }
                    // `<a href=>`: a missing value, the tag ends.
                    Some(b'>') => {}
                    Some(_) => {
                        let start = at;
                        while at < bytes.len() && !is_space(bytes[at]) && bytes[at] != b'>' {
                            at += 1;
                        }
                        if at >= bytes.len() {
                            return None;
                        }
                        value = attribute_value(self.src, start, at);
                    }
                    None => return None,
                }
            }
            if keep && !self.attrs[first..].iter().any(|a| a.name == name) {
                self.attrs.push(RawAttr { name, value });
            }
        }
    }

    /// Raw text up to the end tag `name` (returned next), or to the end of input.
    fn raw_text(&mut self, kind: RawKind, name: &'static str) -> Token<'a> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let end = match kind {
            RawKind::Script => script_end(bytes, start),
            RawKind::Rcdata | RawKind::Rawtext => raw_end(bytes, start, name),
        };
        let text_end = end.unwrap_or(bytes.len());
        self.pos = text_end;
        self.pending = Some(match end {
            None => Token::Eof,
            Some(at) => {
                // The end tag: `</name`, then attributes (ignored) up to `>`.
                self.pos = at + 2 + name.len();
                let first = self.attrs.len();
                let closed = self.attributes(false);
                self.attrs.truncate(first);
                match closed {
                    Some(_) => Token::End {
                        name: Cow::Borrowed(name),
                    },
                    None => Token::Eof,
                }
            }
        });
        let text = &self.src[start..text_end];
        if text.is_empty() {
            return self.pending.take().unwrap_or(Token::Eof);
        }
        Token::Text(match kind {
            RawKind::Rcdata if memchr(b'&', text.as_bytes()).is_some() => {
                let mut out = String::with_capacity(text.len());
                decode_into(text, false, &mut out);
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(text),
        })
    }
}

/// `name` lowercased (ASCII), borrowed when it already is.
fn lowercase(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

fn attribute_value(src: &str, start: usize, end: usize) -> Cow<'_, str> {
    let value = &src[start..end];
    if memchr(b'&', value.as_bytes()).is_none() {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    decode_into(value, true, &mut out);
    Cow::Owned(out)
}

/// `text` with its character references decoded into `out`.
pub(crate) fn decode_into(text: &str, in_attribute: bool, out: &mut String) {
    let bytes = text.as_bytes();
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = memchr(b'&', &bytes[at..]).map(|i| at + i) {
        out.push_str(&text[copied..found]);
        let consumed = char_ref(text, found + 1, in_attribute, out);
        at = found + 1 + consumed;
        copied = at;
    }
    out.push_str(&text[copied..]);
}

/// Decodes the character reference after an `&` (at `at`), as html5ever's `CharRefTokenizer`
/// does; pushes the characters (or the `&` itself when there is no reference) and returns
/// how many bytes after the `&` it consumed.
fn char_ref(src: &str, at: usize, in_attribute: bool, out: &mut String) -> usize {
    let bytes = src.as_bytes();
    match bytes.get(at) {
        Some(b) if b.is_ascii_alphanumeric() => named_ref(src, at, in_attribute, out),
        Some(b'#') => numeric_ref(bytes, at, out),
        _ => {
            out.push('&');
            0
        }
    }
}

fn named_ref(src: &str, at: usize, in_attribute: bool, out: &mut String) -> usize {
    let mut len = 0;
    let mut matched: Option<((u32, u32), usize)> = None;
    let mut complete = true;
    for c in src[at..].chars() {
        len += c.len_utf8();
        let Some(&value) = NAMED_ENTITIES.get(&src[at..at + len]) else {
            complete = false;
            break;
        };
        if value.0 != 0 {
            matched = Some((value, len));
        }
    }
    let Some(((first, second), name_len)) = matched else {
        out.push('&');
        return 0;
    };
    let bytes = src.as_bytes();
    let last = bytes[at + name_len - 1];
    let next = if complete && name_len == len {
        None
    } else {
        bytes.get(at + name_len).copied()
    };
    let literal = last != b';'
        && in_attribute
        && matches!(next, Some(b) if b == b'=' || b.is_ascii_alphanumeric());
    if literal {
        out.push('&');
        return 0;
    }
    out.extend(
        [first, second]
            .into_iter()
            .filter(|&c| c != 0)
            .filter_map(char::from_u32),
    );
    name_len
}

fn numeric_ref(bytes: &[u8], hash: usize, out: &mut String) -> usize {
    let mut at = hash + 1;
    let base = match bytes.get(at) {
        Some(b'x' | b'X') => {
            at += 1;
            16
        }
        _ => 10,
    };
    let mut num: u32 = 0;
    let mut too_big = false;
    let mut digits = false;
    while let Some(digit) = bytes.get(at).and_then(|&b| char::from(b).to_digit(base)) {
        num = num.wrapping_mul(base);
        if num > 0x10_FFFF {
            too_big = true;
        }
        num = num.wrapping_add(digit);
        digits = true;
        at += 1;
    }
    if !digits {
        out.push('&');
        return 0;
    }
    if bytes.get(at) == Some(&b';') {
        at += 1;
    }
    let c = match num {
        n if n > 0x10_FFFF || too_big => '\u{fffd}',
        0 | 0xD800..=0xDFFF => '\u{fffd}',
        0x80..=0x9F => C1_REPLACEMENTS[(num - 0x80) as usize]
            .unwrap_or_else(|| char::from_u32(num).unwrap_or('\u{fffd}')),
        n => char::from_u32(n).unwrap_or('\u{fffd}'),
    };
    out.push(c);
    at - hash
}

/// The end of a comment whose text starts at `from` (after `<!--`), as the comment states
/// of the standard find it; the end of input ends it too.
fn comment_end(bytes: &[u8], from: usize) -> usize {
    #[derive(Clone, Copy)]
    enum S {
        Start,
        StartDash,
        Comment,
        Lt,
        LtBang,
        LtBangDash,
        EndDash,
        End,
        EndBang,
    }
    let mut state = S::Start;
    let mut at = from;
    while at < bytes.len() {
        let c = bytes[at];
        state = match (state, c) {
            (S::Start | S::StartDash | S::End | S::EndBang, b'>') => return at + 1,
            (S::Start, b'-') => S::StartDash,
            (S::StartDash | S::EndDash | S::End, b'-') => S::End,
            (S::End, b'!') => S::EndBang,
            (S::EndBang | S::LtBangDash, b'-') => {
                if matches!(state, S::LtBangDash) {
                    S::End
                } else {
                    S::EndDash
                }
            }
            (S::Comment | S::Lt, b'<') => S::Lt,
            (S::Lt, b'!') => S::LtBang,
            (S::LtBang, b'-') => S::LtBangDash,
            (S::Comment, b'-') => S::EndDash,
            (S::Comment, _) => {
                // Nothing but `<` and `-` matters inside a comment: skip ahead.
                match memchr2(b'-', b'<', &bytes[at..]) {
                    Some(i) => {
                        at += i;
                        continue;
                    }
                    None => return bytes.len(),
                }
            }
            // Anything else reconsumes in the comment state (or the end-dash state).
            (S::LtBangDash, _) => {
                state = S::EndDash;
                continue;
            }
            _ => {
                state = S::Comment;
                continue;
            }
        };
        at += 1;
    }
    bytes.len()
}

/// The position after a doctype whose keyword ends at `from`, and its quirks mode.
fn doctype(bytes: &[u8], from: usize) -> (usize, Quirks) {
    let Some(close) = memchr(b'>', &bytes[from..]).map(|i| from + i) else {
        return (bytes.len(), Quirks::Yes);
    };
    let inner = &bytes[from..close];
    let mut words = inner
        .split(|&b| is_space(b))
        .filter(|word| !word.is_empty());
    let quirks = match (words.next(), words.next()) {
        (Some(name), None) if name.eq_ignore_ascii_case(b"html") => Quirks::No,
        (Some(name), _) if name.eq_ignore_ascii_case(b"html") => Quirks::Unknown,
        _ => Quirks::Yes,
    };
    (close + 1, quirks)
}

/// The start of the end tag `</name` (case-insensitive, then a space, `/` or `>`) that ends
/// RCDATA or RAWTEXT starting at `from`.
fn raw_end(bytes: &[u8], from: usize, name: &str) -> Option<usize> {
    let mut at = from;
    while let Some(lt) = memchr(b'<', &bytes[at..]).map(|i| at + i) {
        if is_end_tag(bytes, lt, name) {
            return Some(lt);
        }
        at = lt + 1;
    }
    None
}

fn is_end_tag(bytes: &[u8], lt: usize, name: &str) -> bool {
    let after = lt + 2 + name.len();
    bytes.get(lt + 1) == Some(&b'/')
        && bytes.len() > after
        && bytes[lt + 2..after].eq_ignore_ascii_case(name.as_bytes())
        && matches!(bytes[after], b'\t' | b'\n' | b'\x0C' | b' ' | b'/' | b'>')
}

/// The start of the `</script` that ends script data starting at `from`, following the
/// standard's escaped and double-escaped script states (`<!--` ... `<script>` ... `-->`).
fn script_end(bytes: &[u8], from: usize) -> Option<usize> {
    let first_end = raw_end(bytes, from, "script");
    // Only an escape before the first `</script` matters (searching the whole rest of the
    // page for every script would be quadratic).
    let until = first_end.unwrap_or(bytes.len());
    let escape = memchr::memmem::find(&bytes[from..until], b"<!--").map(|i| from + i);
    match (first_end, escape) {
        (end, None) => end,
        (Some(end), Some(escape)) if end < escape => Some(end),
        (_, Some(escape)) => escaped_script_end(bytes, escape),
    }
}

/// The script data states from an `<!--` at `from` (script data) to the end tag.
fn escaped_script_end(bytes: &[u8], from: usize) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Data,
        Escaped,
        EscapedDash,
        EscapedDashDash,
        Double,
        DoubleDash,
        DoubleDashDash,
    }
    let mut state = S::Data;
    let mut at = from;
    while at < bytes.len() {
        let c = bytes[at];
        match state {
            S::Data => {
                if c == b'<' {
                    if is_end_tag(bytes, at, "script") {
                        return Some(at);
                    }
                    if bytes[at + 1..].starts_with(b"!--") {
                        // Script data escape start, start dash: `<!--` then escaped dash dash.
                        state = S::EscapedDashDash;
                        at += 4;
                        continue;
                    }
                }
            }
            S::Escaped | S::EscapedDash | S::EscapedDashDash => match c {
                b'-' => {
                    state = match state {
                        S::Escaped => S::EscapedDash,
                        _ => S::EscapedDashDash,
                    };
                }
                b'>' if state == S::EscapedDashDash => state = S::Data,
                b'<' => {
                    if is_end_tag(bytes, at, "script") {
                        return Some(at);
                    }
                    state = S::Escaped;
                    if let Some(after) = script_word(bytes, at + 1) {
                        // `<script` followed by a space, `/` or `>`: double escaped.
                        state = S::Double;
                        at = after;
                        continue;
                    }
                }
                _ => state = S::Escaped,
            },
            S::Double | S::DoubleDash | S::DoubleDashDash => match c {
                b'-' => {
                    state = match state {
                        S::Double => S::DoubleDash,
                        _ => S::DoubleDashDash,
                    };
                }
                b'>' if state == S::DoubleDashDash => state = S::Data,
                b'<' => {
                    state = S::Double;
                    if bytes.get(at + 1) == Some(&b'/')
                        && let Some(after) = script_word(bytes, at + 2)
                    {
                        // `</script` + space, `/` or `>`: back to escaped.
                        state = S::Escaped;
                        at = after;
                        continue;
                    }
                }
                _ => state = S::Double,
            },
        }
        at += 1;
    }
    None
}

/// When `script` (any case) starts at `at` and is followed by a space, `/` or `>`, the
/// position of that delimiter (which the caller processes next).
fn script_word(bytes: &[u8], at: usize) -> Option<usize> {
    let end = at + 6;
    (bytes.len() > end
        && bytes[at..end].eq_ignore_ascii_case(b"script")
        && matches!(bytes[end], b'\t' | b'\n' | b'\x0C' | b' ' | b'/' | b'>'))
    .then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str, attribute: bool) -> String {
        let mut out = String::new();
        decode_into(text, attribute, &mut out);
        out
    }

    #[test]
    fn character_references_follow_the_standard() {
        assert_eq!(decode("a &amp; b", false), "a & b");
        assert_eq!(decode("&amp", false), "&");
        assert_eq!(decode("&ampx", false), "&x");
        assert_eq!(decode("&ampx", true), "&ampx");
        assert_eq!(decode("&amp=", true), "&amp=");
        assert_eq!(decode("&amp;x", true), "&x");
        assert_eq!(decode("&notit;", false), "\u{ac}it;");
        assert_eq!(decode("&notin;", false), "\u{2209}");
        assert_eq!(
            decode("&#128;&#x80;&#0;&#xD800;&#x110000;", false),
            "€€\u{fffd}\u{fffd}\u{fffd}"
        );
        assert_eq!(decode("&#;&#x;&#xg", false), "&#;&#x;&#xg");
        assert_eq!(decode("&#65&#x42;", false), "AB");
        assert_eq!(decode("&nosuch; &", false), "&nosuch; &");
        assert_eq!(decode("&NotEqualTilde;", false), "\u{2242}\u{338}");
    }

    fn tokens(html: &str) -> Vec<String> {
        let mut t = Tokenizer::new(html);
        let mut out = Vec::new();
        loop {
            let token = t.next_token(false);
            out.push(match &token {
                Token::Start { name, self_closing } => {
                    let attrs: Vec<String> = t
                        .attrs
                        .iter()
                        .map(|a| format!("{}={}", a.name, a.value))
                        .collect();
                    format!(
                        "<{name} {}{}>",
                        attrs.join(" "),
                        if *self_closing { "/" } else { "" }
                    )
                }
                Token::End { name } => format!("</{name}>"),
                Token::Text(text) => format!("'{text}'"),
                Token::Comment => "#comment".to_owned(),
                Token::Doctype(q) => format!("doctype {q:?}"),
                Token::Eof => "EOF".to_owned(),
            });
            if matches!(token, Token::Eof) {
                return out;
            }
            if let Token::Start { name, .. } = &token
                && name == "script"
            {
                t.switch_to_raw(RawKind::Script, "script");
            }
        }
    }

    #[test]
    fn tags_attributes_comments_and_text() {
        assert_eq!(
            tokens("<!DOCTYPE html><A HREF=x b='1' b=2 c d=\"&lt;\">t &lt; u</a ><br/>"),
            [
                "doctype No",
                "<a href=x b=1 c= d=<>",
                "'t < u'",
                "</a>",
                "<br />",
                "EOF"
            ]
        );
        assert_eq!(
            tokens("a < b <!--x--> <!-->c<!--->d<!-- -- --!>e<? x >f</>g</ x>h"),
            [
                "'a < b '", "#comment", "' '", "#comment", "'c'", "#comment", "'d'", "#comment",
                "'e'", "#comment", "'f'", "'g'", "#comment", "'h'", "EOF"
            ]
        );
        assert_eq!(tokens("x</"), ["'x</'", "EOF"]);
        assert_eq!(tokens("x<a href='y"), ["'x'", "EOF"]);
        assert_eq!(tokens("<a =b c=d/e>"), ["<a =b= c=d/e>", "EOF"]);
    }

    #[test]
    fn script_data_and_its_escapes() {
        assert_eq!(
            tokens("<script>a</b></script >c"),
            ["<script >", "'a</b>'", "</script>", "'c'", "EOF"]
        );
        assert_eq!(
            tokens("<script><!--<script>x</script>y--></script>z"),
            [
                "<script >",
                "'<!--<script>x</script>y-->'",
                "</script>",
                "'z'",
                "EOF"
            ]
        );
        assert_eq!(
            tokens("<script><!-- a </script>b"),
            ["<script >", "'<!-- a '", "</script>", "'b'", "EOF"]
        );
        assert_eq!(
            tokens("<script>never ends"),
            ["<script >", "'never ends'", "EOF"]
        );
    }
}
