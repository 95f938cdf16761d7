//! Caps on what a run's plugin can make the store keep: each piece of text
//! is cut to a size, and all of a run's text together has a budget. A plugin
//! that logs in a loop fills its budget, not the disk; what was cut says so.

/// Size caps for what one run stores of what its plugin sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Everything a run's plugin sends, together: logs, notes, tables and
    /// metrics. Past it, they are dropped and a note says so.
    pub run_bytes: u64,
    /// One log line, note, table cell, verdict summary or error.
    pub text_bytes: usize,
    /// A request label, a metric's name or unit, a table's name or a column.
    pub name_bytes: usize,
    /// One table: the text of its cells together.
    pub table_bytes: usize,
}

impl Default for StorageLimits {
    fn default() -> StorageLimits {
        StorageLimits {
            run_bytes: 256 << 20,
            text_bytes: 64 << 10,
            name_bytes: 256,
            table_bytes: 8 << 20,
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with a
/// marker that says how much was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

/// The rows of a table that fit in `max` bytes of cell text, each cell cut
/// to `cell_max`; and how many rows were left out.
pub fn fit_rows(rows: &[Vec<String>], cell_max: usize, max: usize) -> (Vec<Vec<String>>, usize) {
    let mut used = 0;
    let mut kept = Vec::new();
    for row in rows {
        let row: Vec<String> = row.iter().map(|c| cut(c, cell_max)).collect();
        let bytes: usize = row.iter().map(String::len).sum();
        if used + bytes > max {
            break;
        }
        used += bytes;
        kept.push(row);
    }
    let left_out = rows.len() - kept.len();
    (kept, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_a_character_boundary_and_says_so() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut("ééééé", 3);
        assert_eq!(cut_text, "é… [8 bytes cut]");
    }

    #[test]
    fn rows_are_kept_while_they_fit() {
        let rows: Vec<Vec<String>> = (0..10).map(|i| vec![format!("{i:04}")]).collect();
        let (kept, left_out) = fit_rows(&rows, 100, 20);
        assert_eq!((kept.len(), left_out), (5, 5));
        let (kept, _) = fit_rows(&[vec!["x".repeat(50)]], 10, 1000);
        assert!(kept[0][0].starts_with("xxxxxxxxxx…"));
    }
}
