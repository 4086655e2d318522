//! The comparison as an SVG horizontal bar chart: one group per platform, one bar per row,
//! each labelled with its size. Hand-written SVG 1.1 with a white background, so it reads
//! the same in a browser, on a dark CI page and through `rsvg-convert`.

use std::fmt::Write as _;

use super::model::{ComparisonKind, SizeReport};
use crate::render::human_bytes;

const WIDTH: u32 = 900;
const LABEL_WIDTH: u32 = 360;
const BAR_MAX: u32 = 400;
const ROW: u32 = 26;
const BAR: u32 = 18;
const FONT: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// Escapes text for SVG (XML) content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn colour(kind: ComparisonKind) -> &'static str {
    match kind {
        ComparisonKind::Image => "#2f855a",
        ComparisonKind::Codec => "#68d391",
        ComparisonKind::ReferenceBase => "#a0aec0",
        ComparisonKind::Layout => "#4299e1",
        ComparisonKind::GlibcDynamic => "#ed8936",
    }
}

/// Shortens a label to fit the label column.
fn fit(label: &str, max_chars: usize) -> String {
    if label.chars().count() <= max_chars {
        label.to_owned()
    } else {
        let kept: String = label.chars().take(max_chars - 1).collect();
        format!("{kept}…")
    }
}

/// The chart.
pub fn chart(report: &SizeReport) -> String {
    let rows: usize = report.platforms.iter().map(|p| p.comparisons.len()).sum();
    let height = 50 + report.platforms.len() as u32 * 40 + rows as u32 * ROW + 40;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="13">"#
    );
    let _ = writeln!(
        s,
        "<title>{}</title>",
        escape(&format!("Image size: {}", report.image))
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="16" y="28" font-size="16" font-weight="bold" fill="#1a202c">{}</text>"##,
        escape(&fit(
            &format!("Compressed size (what a pull transfers): {}", report.image),
            100
        ))
    );
    let mut y = 50;
    for platform in &report.platforms {
        let max = platform
            .comparisons
            .iter()
            .map(|c| c.compressed)
            .max()
            .unwrap_or(1)
            .max(1);
        let _ = writeln!(
            s,
            r##"<text x="16" y="{}" font-weight="bold" fill="#2d3748">{}</text>"##,
            y + 22,
            escape(&platform.platform)
        );
        y += 34;
        for row in &platform.comparisons {
            let width = ((row.compressed as f64 / max as f64) * f64::from(BAR_MAX)).round() as u32;
            let width = width.max(2);
            let size = human_bytes(row.compressed);
            let value = if row.approximate {
                format!("≈{size}")
            } else {
                size
            };
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#1a202c">{}</text>"##,
                LABEL_WIDTH - 8,
                y + 14,
                escape(&fit(&row.label, 52))
            );
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_WIDTH}" y="{}" width="{width}" height="{BAR}" rx="2" fill="{}"><title>{}</title></rect>"#,
                y + 1,
                colour(row.kind),
                escape(&format!("{}: {} bytes", row.label, row.compressed))
            );
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" fill="#1a202c">{}</text>"##,
                LABEL_WIDTH + width + 6,
                y + 14,
                escape(&value)
            );
            y += ROW;
        }
        y += 6;
    }
    let _ = writeln!(
        s,
        r##"<text x="16" y="{}" font-size="11" fill="#4a5568">{}</text>"##,
        y + 20,
        escape(
            "bars: compressed bytes; ≈ = rounded published figure; reference bases = base + this image's layers"
        )
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(fit("abcdef", 4), "abc…");
    }
}
