//! Tables that fit the terminal: each column as wide as its widest cell (up to its
//! limit), the last column taking what is left, and the columns a person can spare left
//! out when the last one would get too little room. Cut cells end with `…`.

use std::io::IsTerminal as _;

/// The width tables fit when stdout is not a terminal (or its width is unknown).
pub const DEFAULT_WIDTH: usize = 100;

/// Spaces between columns.
const GAP: usize = 2;

/// The last column's room below which spare columns are left out.
const LAST_MIN: usize = 30;

/// The least room the last column gets, even past the width.
const LAST_FLOOR: usize = 10;

/// The width tables fit on stdout: the terminal's, else [`DEFAULT_WIDTH`].
pub fn width() -> usize {
    if std::io::stdout().is_terminal()
        && let Some((_, columns)) = console::Term::stdout().size_checked()
        && columns > 0
    {
        return usize::from(columns);
    }
    DEFAULT_WIDTH
}

/// One column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    /// The widest its cells are shown (the last column: ignored).
    pub max: usize,
    /// Left out before any column with a lower rank when room is short; 0: never.
    pub spare: u8,
}

impl Column {
    /// A column never left out, at most `max` wide.
    pub const fn new(header: &'static str, max: usize) -> Column {
        Column { header, max, spare: 0 }
    }

    /// The same, left out when room is short: the highest `rank` first.
    pub const fn spare(self, rank: u8) -> Column {
        Column { spare: rank, ..self }
    }
}

fn text_width(text: &str) -> usize {
    console::measure_text_width(text)
}

/// `text` in at most `width` columns, cut with `…`.
pub fn fit(text: &str, width: usize) -> String {
    if text_width(text) <= width {
        return text.to_string();
    }
    console::truncate_str(text, width, "…").into_owned()
}

/// The lines of a table of `rows` under `columns`, at most `width` wide (unless even
/// the columns never left out do not fit). Each row has one cell per column.
pub fn render(columns: &[Column], rows: &[Vec<String>], width: usize) -> Vec<String> {
    let Some(last) = columns.len().checked_sub(1) else { return Vec::new() };
    let natural: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let widest = rows.iter().map(|r| text_width(&r[i])).max().unwrap_or(0).max(text_width(c.header));
            if i == last { widest } else { widest.min(c.max.max(text_width(c.header))) }
        })
        .collect();
    let mut shown: Vec<usize> = (0..columns.len()).collect();
    let room = |shown: &[usize]| {
        let used: usize = shown.iter().filter(|&&i| i != last).map(|&i| natural[i] + GAP).sum();
        width.saturating_sub(used)
    };
    while room(&shown) < natural[last].min(LAST_MIN) {
        let Some(&drop) =
            shown.iter().filter(|&&i| i != last && columns[i].spare > 0).max_by_key(|&&i| columns[i].spare)
        else {
            break;
        };
        shown.retain(|&i| i != drop);
    }
    // Below a few columns a cut cell says nothing: then the line is let run over.
    let last_width = room(&shown).max(LAST_FLOOR.min(natural[last]));
    let line = |cells: Vec<&str>| {
        let mut line = String::new();
        for (&i, cell) in shown.iter().zip(cells) {
            if i == last {
                line.push_str(&fit(cell, last_width));
            } else {
                let cell = fit(cell, natural[i]);
                let pad = natural[i] + GAP - text_width(&cell);
                line.push_str(&cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line.trim_end().to_string()
    };
    let mut lines = vec![line(shown.iter().map(|&i| columns[i].header).collect())];
    for row in rows {
        lines.push(line(shown.iter().map(|&i| row[i].as_str()).collect()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 4] =
        [Column::new("ID", 20), Column::new("NAME", 8), Column::new("KIND", 12).spare(1), Column::new("NOTE", 0)];

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec!["a1".into(), "production-eu".into(), "automatic".into(), "released v1 of hello-app".into()],
            vec!["b2".into(), "prod".into(), "manual".into(), "x".repeat(80)],
        ]
    }

    #[test]
    fn columns_are_as_wide_as_their_cells_up_to_their_limit() {
        let lines = render(&COLUMNS, &rows(), 200);
        assert_eq!(lines[0], "ID  NAME      KIND       NOTE");
        assert_eq!(lines[1], "a1  product…  automatic  released v1 of hello-app");
        assert_eq!(lines[2], format!("b2  prod      manual     {}", "x".repeat(80)));
    }

    #[test]
    fn the_last_column_is_cut_to_the_width() {
        let lines = render(&COLUMNS, &rows(), 60);
        assert!(lines.iter().all(|l| text_width(l) <= 60), "{lines:#?}");
        assert_eq!(lines[2], format!("b2  prod      manual     {}…", "x".repeat(34)));
    }

    #[test]
    fn spare_columns_are_left_out_when_the_last_would_get_too_little() {
        let lines = render(&COLUMNS, &rows(), 40);
        assert_eq!(lines[0], "ID  NAME      NOTE");
        assert_eq!(lines[1], "a1  product…  released v1 of hello-app");
        assert!(lines.iter().all(|l| text_width(l) <= 40), "{lines:#?}");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let rows = vec![vec!["é".repeat(3), "ü".into(), "-".into(), "日本語のテキスト".into()]];
        let lines = render(&COLUMNS, &rows, 200);
        assert_eq!(lines[1], "ééé  ü     -     日本語のテキスト");
        assert_eq!(fit("日本語のテキスト", 7), "日本語…");
    }
}
