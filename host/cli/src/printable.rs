//! Text from plugins (their names, logs, notes, tables, errors) is stored as
//! sent but shown escaped: a control character would otherwise reach the
//! terminal and act there (set its title, clear the screen, rewrite lines).

use std::io::IsTerminal;

/// `text` with every control character but newline and tab written as an
/// escape (`\u{1b}`).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` escaped and cut to about `max` bytes, for a line that reports
/// something a plugin said (the whole of it is in the results store).
pub fn printable_line(text: &str, max: usize) -> String {
    let shown = printable(text);
    if shown.len() <= max {
        return shown;
    }
    let mut end = max;
    while !shown.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes in the results store)",
        &shown[..end],
        shown.len() - end
    )
}

/// `text` for standard output: escaped when that is a terminal, as it is
/// when written to a file or a pipe (an export is data).
pub fn for_stdout(text: &str) -> String {
    if std::io::stdout().is_terminal() {
        printable(text)
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(
            printable("a\u{1b}]0;title\u{7}b\r\nc\td é"),
            "a\\u{1b}]0;title\\u{7}b\\u{d}\nc\td é"
        );
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J");
    }
}
