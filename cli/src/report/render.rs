//! The report for people: a terminal table and GitHub-flavoured Markdown, both from the
//! same [`SizeReport`].

use std::fmt::Write as _;

use super::checks::signed_bytes;
use super::model::{BaseSplit, BinaryReport, Comparison, PlatformReport, SizeReport};
use crate::render::{Align, human_bytes, table};

/// A digest shortened for tables: `sha256:0123456789ab`.
fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

fn opt_bytes(value: Option<u64>) -> String {
    value.map(human_bytes).unwrap_or_else(|| "-".to_owned())
}

fn ratio(value: u64, base: u64) -> String {
    if base == 0 {
        "-".to_owned()
    } else {
        format!("{:.2}×", value as f64 / base as f64)
    }
}

fn compared_size(c: &Comparison) -> String {
    let size = human_bytes(c.compressed);
    if c.approximate {
        format!("≈{size}")
    } else {
        size
    }
}

fn binary_line(b: &BinaryReport) -> String {
    let source = match b.source {
        super::model::BinarySource::Entrypoint => "entrypoint",
        super::model::BinarySource::LargestExecutable => "largest executable",
        super::model::BinarySource::File => "--binary",
        super::model::BinarySource::GlibcBuild => "--with-gnu build",
    };
    let mut line = match b.built {
        Some(built) => format!(
            "binary {} ({source}): built {} ({built} bytes), shipped {} ({} bytes), stripping \
             saved {} ({} bytes)",
            b.path,
            human_bytes(built),
            human_bytes(b.size),
            b.size,
            human_bytes(built.saturating_sub(b.size)),
            built.saturating_sub(b.size)
        ),
        None => format!(
            "binary {} ({source}): {} ({} bytes)",
            b.path,
            human_bytes(b.size),
            b.size
        ),
    };
    match (b.stripped, b.already_stripped) {
        (Some(s), false) => {
            let _ = write!(line, ", stripped {} ({s} bytes)", human_bytes(s));
        }
        (Some(_), true) => line.push_str(", already stripped"),
        (None, _) => line.push_str(", not ELF"),
    }
    for (name, size) in [("gzip", b.gzip), ("zstd", b.zstd)] {
        match size {
            Some(size) => {
                let _ = write!(line, ", {name} {} ({size} bytes)", human_bytes(size));
            }
            None => {
                let _ = write!(line, ", {name} not measured");
            }
        }
    }
    if let (Some(linkage), Some(machine)) = (&b.linkage, &b.machine) {
        let _ = write!(line, ", {linkage} {machine}");
    }
    line
}

fn base_line(split: &BaseSplit) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    format!(
        "base {}{}: {} layer{}, {} compressed ({} uncompressed); own: {} layer{}, {} compressed \
         ({} uncompressed)",
        split.name.as_deref().unwrap_or("(unnamed)"),
        split
            .digest
            .as_deref()
            .map(|d| format!(" {}", short(d)))
            .unwrap_or_default(),
        split.base_layers,
        plural(split.base_layers),
        human_bytes(split.base_compressed),
        human_bytes(split.base_uncompressed),
        split.own_layers,
        plural(split.own_layers),
        human_bytes(split.own_compressed),
        human_bytes(split.own_uncompressed)
    )
}

fn layer_rows(p: &PlatformReport) -> Vec<Vec<String>> {
    p.layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let holds = l
                .largest
                .first()
                .map(|f| format!("{} ({})", f.path, human_bytes(f.size)))
                .unwrap_or_else(|| "-".to_owned());
            vec![
                if l.from_base {
                    format!("{} base", i + 1)
                } else {
                    (i + 1).to_string()
                },
                short(&l.digest),
                l.media_type.clone(),
                human_bytes(l.compressed),
                human_bytes(l.uncompressed),
                opt_bytes(l.gzip),
                opt_bytes(l.zstd),
                l.entries.to_string(),
                holds,
            ]
        })
        .collect()
}

const LAYER_HEADERS: [(&str, Align); 9] = [
    ("layer", Align::Right),
    ("digest", Align::Left),
    ("media type", Align::Left),
    ("compressed", Align::Right),
    ("uncompressed", Align::Right),
    ("gzip", Align::Right),
    ("zstd", Align::Right),
    ("entries", Align::Right),
    ("largest file", Align::Left),
];

fn comparison_rows(p: &PlatformReport) -> Vec<Vec<String>> {
    p.comparisons
        .iter()
        .map(|c| {
            vec![
                c.label.clone(),
                compared_size(c),
                c.compressed.to_string(),
                opt_bytes(c.uncompressed),
                ratio(c.compressed, p.compressed),
            ]
        })
        .collect()
}

const COMPARISON_HEADERS: [(&str, Align); 5] = [
    ("compared", Align::Left),
    ("compressed", Align::Right),
    ("bytes", Align::Right),
    ("uncompressed", Align::Right),
    ("× this", Align::Right),
];

fn check_lines(report: &SizeReport) -> Vec<String> {
    let mut lines = Vec::new();
    for b in &report.budgets {
        let verdict = if b.passed {
            format!(
                "passed with {} ({} bytes) to spare",
                human_bytes(b.margin.unsigned_abs()),
                b.margin
            )
        } else {
            format!(
                "FAILED: over by {} ({} bytes)",
                human_bytes(b.margin.unsigned_abs()),
                b.margin.unsigned_abs()
            )
        };
        lines.push(format!(
            "budget {}: {} is {} ({} bytes): {verdict}",
            human_bytes(b.limit),
            b.platform,
            human_bytes(b.compressed),
            b.compressed
        ));
    }
    for g in &report.growth {
        let limit = match g.allowed {
            Some(a) => format!(", {} allowed", signed_bytes(a as i64)),
            None => String::new(),
        };
        let verdict = match (g.passed, g.allowed) {
            (true, Some(_)) => "passed",
            (true, None) => "reported",
            (false, _) => "FAILED",
        };
        lines.push(format!(
            "growth against {}: {} {:+.2}% ({}){limit}: {verdict}",
            report.baseline.as_deref().unwrap_or("the baseline"),
            g.platform,
            g.percent,
            signed_bytes(g.delta)
        ));
        for l in g.layers.iter().filter(|l| l.delta != 0) {
            lines.push(format!(
                "  layer {} {}{}: {}",
                l.position,
                short(&l.digest),
                l.holds
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default(),
                signed_bytes(l.delta)
            ));
        }
    }
    lines
}

/// The terminal rendering.
pub fn human(report: &SizeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {}  {}",
        report.image,
        short(&report.digest),
        report.media_type
    );
    for p in &report.platforms {
        let _ = writeln!(
            out,
            "\n{}: {} compressed ({} bytes: manifest {} + config {} + {} layer{}), {} uncompressed ({} bytes)",
            p.platform,
            human_bytes(p.compressed),
            p.compressed,
            p.manifest_size,
            p.config_size,
            p.layers.len(),
            if p.layers.len() == 1 { "" } else { "s" },
            human_bytes(p.uncompressed),
            p.uncompressed
        );
        if let Some(split) = &p.base {
            let _ = writeln!(out, "{}", base_line(split));
        }
        out.push('\n');
        out.push_str(&table(&LAYER_HEADERS, &layer_rows(p)));
        if let Some(b) = &p.binary {
            let _ = writeln!(out, "\n{}", binary_line(b));
        }
        if let Some(b) = &p.gnu_binary {
            let _ = writeln!(out, "{}", binary_line(b));
        }
        out.push('\n');
        out.push_str(&table(&COMPARISON_HEADERS, &comparison_rows(p)));
    }
    if report.index_size.is_some()
        || report
            .platforms
            .iter()
            .any(|p| p.comparisons.iter().any(|c| c.approximate))
    {
        out.push('\n');
    }
    if let Some(size) = report.index_size {
        let _ = writeln!(out, "a pull also transfers the index: {size} bytes");
    }
    if report
        .platforms
        .iter()
        .any(|p| p.comparisons.iter().any(|c| c.approximate))
    {
        let _ = writeln!(
            out,
            "≈ rests on a rounded published figure (see --format json for sources)"
        );
    }
    let checks = check_lines(report);
    if !checks.is_empty() {
        out.push('\n');
        for line in checks {
            let _ = writeln!(out, "{line}");
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for problem in &report.problems {
        let _ = writeln!(out, "problem: {problem}");
    }
    out
}

fn md_escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn md_table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let names: Vec<&str> = headers.iter().map(|(h, _)| *h).collect();
    let _ = writeln!(out, "| {} |", names.join(" | "));
    let rule: Vec<&str> = headers
        .iter()
        .map(|(_, a)| if *a == Align::Right { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", rule.join(" | "));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The Markdown rendering (for `$GITHUB_STEP_SUMMARY` and pull-request comments).
pub fn markdown(report: &SizeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Image size: `{}`\n", report.image);
    let _ = writeln!(out, "`{}` ({})\n", report.digest, report.media_type);
    for p in &report.platforms {
        let _ = writeln!(
            out,
            "### {}: {} compressed, {} uncompressed\n",
            p.platform,
            human_bytes(p.compressed),
            human_bytes(p.uncompressed)
        );
        if let Some(split) = &p.base {
            let _ = writeln!(out, "{}\n", md_escape(&base_line(split)));
        }
        out.push_str(&md_table(&COMPARISON_HEADERS, &comparison_rows(p)));
        out.push('\n');
        out.push_str(&md_table(&LAYER_HEADERS, &layer_rows(p)));
        if let Some(b) = &p.binary {
            let _ = writeln!(out, "\n{}", md_escape(&binary_line(b)));
        }
        if let Some(b) = &p.gnu_binary {
            let _ = writeln!(out, "\n{}", md_escape(&binary_line(b)));
        }
        out.push('\n');
    }
    let checks = check_lines(report);
    if !checks.is_empty() {
        for line in checks {
            let _ = writeln!(out, "- {}", md_escape(line.trim_start()));
        }
        out.push('\n');
    }
    for note in &report.notes {
        let _ = writeln!(out, "> note: {}", md_escape(note));
    }
    for problem in &report.problems {
        let _ = writeln!(out, "> **problem:** {}", md_escape(problem));
    }
    if !report.notes.is_empty() || !report.problems.is_empty() {
        out.push('\n');
    }
    out
}
