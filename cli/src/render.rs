//! How reports reach the user: one report value per command, rendered as a human table or
//! as JSON (and, for some, Markdown or SVG), so the renderings can never disagree.

use std::fmt::Write as _;

use serde::Serialize;

use crate::error::ExitKind;

/// Output formats (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Tables and sentences for a person at a terminal.
    #[default]
    Human,
    /// One JSON document on stdout, for CI and scripts.
    Json,
    /// GitHub-flavoured Markdown (reports that support it).
    Markdown,
    /// An SVG chart (reports that support it).
    Svg,
}

/// What every command returns: serialisable for `--format json`, printable for people, and
/// carrying whether its checks passed.
pub trait CommandReport: Serialize {
    /// The human rendering (ends with a newline when not empty).
    fn human(&self) -> String;

    /// The Markdown rendering, for commands that have one.
    fn markdown(&self) -> Option<String> {
        None
    }

    /// The SVG rendering, for commands that have one.
    fn svg(&self) -> Option<String> {
        None
    }

    /// [`ExitKind::CheckFailed`] when a check in this report failed.
    fn exit_kind(&self) -> ExitKind {
        ExitKind::Ok
    }
}

/// Renders `report` in `format`; None when the command has no such rendering.
pub fn render(report: &dyn ErasedReport, format: Format) -> Option<String> {
    match format {
        Format::Human => Some(report.human_text()),
        Format::Json => Some(report.json_text()),
        Format::Markdown => report.markdown_text(),
        Format::Svg => report.svg_text(),
    }
}

/// Object-safe view of a [`CommandReport`] (used by `main` to print any command's report).
pub trait ErasedReport {
    /// See [`CommandReport::human`].
    fn human_text(&self) -> String;
    /// Pretty JSON with a trailing newline.
    fn json_text(&self) -> String;
    /// See [`CommandReport::markdown`].
    fn markdown_text(&self) -> Option<String>;
    /// See [`CommandReport::svg`].
    fn svg_text(&self) -> Option<String>;
    /// See [`CommandReport::exit_kind`].
    fn exit(&self) -> ExitKind;
}

impl<T: CommandReport> ErasedReport for T {
    fn human_text(&self) -> String {
        self.human()
    }
    fn json_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise report: {e}\"}}"));
        text.push('\n');
        text
    }
    fn markdown_text(&self) -> Option<String> {
        self.markdown()
    }
    fn svg_text(&self) -> Option<String> {
        self.svg()
    }
    fn exit(&self) -> ExitKind {
        self.exit_kind()
    }
}

/// Column alignment in [`table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns.
    Right,
}

/// A plain-text table with a header row, columns padded to their widest cell.
pub fn table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|(h, _)| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (i, (_, align)) in headers.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// A byte count for people: `512 B`, `1.50 KiB`, `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// Parses a size such as `5MiB`, `5 MB`, `1.5GiB` or `123456` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (expected e.g. 5MiB, 800KB, 1048576)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" | "ki" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" | "mi" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" | "gi" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    Ok((number * factor as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &[("name", Align::Left), ("size", Align::Right)],
            &[
                vec!["a".into(), "1 B".into()],
                vec!["longer".into(), "10.0 KiB".into()],
            ],
        );
        assert_eq!(t, "name        size\na            1 B\nlonger  10.0 KiB\n");
    }

    #[test]
    fn sizes_round_trip() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(5 << 20), "5.00 MiB");
        assert_eq!(parse_bytes("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_bytes("5 MB").unwrap(), 5_000_000);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_bytes("42").unwrap(), 42);
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
    }
}
