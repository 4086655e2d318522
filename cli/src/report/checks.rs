//! The report's checks for CI: `--budget` (the compressed image may not be larger) and
//! `--baseline` with `--max-growth` (it may not grow more than this against an earlier
//! report). Both say by how much they passed or failed.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::Result;

use super::model::{
    BudgetResult, GrowthResult, LayerGrowth, PlatformReport, SCHEMA_VERSION, SizeReport,
};
use crate::error;
use crate::render::{human_bytes, parse_bytes};

/// How much growth `--max-growth` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxGrowth {
    /// A percentage of the baseline, in hundredths of a percent (`5%` = 500).
    Percent(u64),
    /// A number of bytes (`100KiB`).
    Bytes(u64),
}

impl FromStr for MaxGrowth {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.strip_suffix('%') {
            Some(number) => {
                let value: f64 = number.trim().parse().map_err(|_| {
                    format!("`{text}` is not a growth limit (expected e.g. 5%, 0.5% or 100KiB)")
                })?;
                if !(0.0..=1_000_000.0).contains(&value) {
                    return Err(format!(
                        "`{text}`: the percentage must be between 0 and 1000000"
                    ));
                }
                Ok(MaxGrowth::Percent((value * 100.0).round() as u64))
            }
            None => parse_bytes(t).map(MaxGrowth::Bytes),
        }
    }
}

impl fmt::Display for MaxGrowth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxGrowth::Percent(h) if h % 100 == 0 => write!(f, "{}%", h / 100),
            MaxGrowth::Percent(h) => write!(f, "{}.{:02}%", h / 100, h % 100),
            MaxGrowth::Bytes(b) => write!(f, "{} ({b} bytes)", human_bytes(*b)),
        }
    }
}

impl MaxGrowth {
    /// The bytes of growth allowed over `baseline` (rounded down).
    pub fn allowed(self, baseline: u64) -> u64 {
        match self {
            MaxGrowth::Percent(hundredths) => {
                (u128::from(baseline) * u128::from(hundredths) / 10_000) as u64
            }
            MaxGrowth::Bytes(bytes) => bytes,
        }
    }
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `a - b` as a signed number.
fn difference(a: u64, b: u64) -> i64 {
    signed(a).saturating_sub(signed(b))
}

/// A signed byte count for people: `+10.0 KiB (10240 bytes)`.
pub fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!(
        "{sign}{} ({} bytes)",
        human_bytes(delta.unsigned_abs()),
        delta.unsigned_abs()
    )
}

/// `--budget LIMIT` against every platform; failures go to `problems`.
pub fn check_budget(
    platforms: &[PlatformReport],
    limit: u64,
    problems: &mut Vec<String>,
) -> Vec<BudgetResult> {
    platforms
        .iter()
        .map(|p| {
            let margin = difference(limit, p.compressed);
            let passed = p.compressed <= limit;
            if !passed {
                problems.push(format!(
                    "{}: the compressed image is {} ({} bytes), over the budget of {} ({limit} bytes) by {} ({} bytes)",
                    p.platform,
                    human_bytes(p.compressed),
                    p.compressed,
                    human_bytes(limit),
                    human_bytes(margin.unsigned_abs()),
                    margin.unsigned_abs()
                ));
            }
            BudgetResult {
                platform: p.platform.clone(),
                limit,
                compressed: p.compressed,
                margin,
                passed,
            }
        })
        .collect()
}

/// Reads an earlier `--format json` report; one of another schema version is refused.
pub fn load_baseline(path: &Path) -> Result<SizeReport> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| error::input(format!("cannot read the baseline {}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        error::input(format!(
            "the baseline {} is not JSON ({e}); write one with `cargo airlock report --format json > {}`",
            path.display(),
            path.display()
        ))
    })?;
    match value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(error::input(format!(
                "the baseline {} has schema_version {v}, but this airlock reads and writes \
                 schema_version {SCHEMA_VERSION}; write a new baseline with \
                 `cargo airlock report --format json`",
                path.display()
            )));
        }
        None => {
            return Err(error::input(format!(
                "the baseline {} has no schema_version: it is not a `cargo airlock report \
                 --format json` report",
                path.display()
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        error::input(format!(
            "the baseline {} is not a valid schema_version {SCHEMA_VERSION} report: {e}",
            path.display()
        ))
    })
}

/// Compares every platform with the same platform in `baseline`; failures go to `problems`,
/// platforms missing from the baseline to `notes`.
pub fn check_growth(
    platforms: &[PlatformReport],
    baseline: &SizeReport,
    baseline_name: &str,
    max: Option<MaxGrowth>,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Vec<GrowthResult> {
    let mut results = Vec::new();
    for current in platforms {
        let Some(old) = baseline
            .platforms
            .iter()
            .find(|b| b.platform == current.platform)
        else {
            notes.push(format!(
                "{}: not in the baseline {baseline_name}, so its growth is not checked",
                current.platform
            ));
            continue;
        };
        let delta = difference(current.compressed, old.compressed);
        let percent = if old.compressed == 0 {
            0.0
        } else {
            delta as f64 * 100.0 / old.compressed as f64
        };
        let allowed = max.map(|m| m.allowed(old.compressed));
        let passed = allowed.is_none_or(|a| delta <= signed(a));
        let layers = layer_growth(current, old);
        if !passed {
            let grown: Vec<String> = layers
                .iter()
                .filter(|l| l.delta > 0)
                .map(|l| {
                    format!(
                        "layer {} ({}{}) grew by {} bytes",
                        l.position,
                        l.digest,
                        l.holds
                            .as_deref()
                            .map(|h| format!(", holds {h}"))
                            .unwrap_or_default(),
                        l.delta
                    )
                })
                .collect();
            problems.push(format!(
                "{}: the compressed image grew by {percent:.2}% ({}) against {baseline_name}, more than the {} allowed ({} bytes); {}",
                current.platform,
                signed_bytes(delta),
                max.map(|m| m.to_string()).unwrap_or_default(),
                allowed.unwrap_or(0),
                if grown.is_empty() {
                    "the manifest and config grew".to_owned()
                } else {
                    grown.join("; ")
                }
            ));
        }
        results.push(GrowthResult {
            platform: current.platform.clone(),
            baseline: old.compressed,
            compressed: current.compressed,
            delta,
            percent,
            allowed,
            passed,
            layers,
        });
    }
    results
}

/// Layers whose compressed size changed, matched by position.
fn layer_growth(current: &PlatformReport, old: &PlatformReport) -> Vec<LayerGrowth> {
    let count = current.layers.len().max(old.layers.len());
    (0..count)
        .filter_map(|i| {
            let now = current.layers.get(i);
            let before = old.layers.get(i);
            let (now_size, before_size) = (
                now.map_or(0, |l| l.compressed),
                before.map_or(0, |l| l.compressed),
            );
            if now_size == before_size {
                return None;
            }
            let digest = now.or(before).map(|l| l.digest.clone()).unwrap_or_default();
            Some(LayerGrowth {
                position: i + 1,
                digest,
                holds: now.and_then(|l| l.largest.first()).map(|f| f.path.clone()),
                baseline: before_size,
                compressed: now_size,
                delta: difference(now_size, before_size),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_limits_parse_and_round_down() {
        assert_eq!("5%".parse::<MaxGrowth>().unwrap(), MaxGrowth::Percent(500));
        assert_eq!(
            "0.25%".parse::<MaxGrowth>().unwrap(),
            MaxGrowth::Percent(25)
        );
        assert_eq!("1KiB".parse::<MaxGrowth>().unwrap(), MaxGrowth::Bytes(1024));
        assert!("lots".parse::<MaxGrowth>().is_err());
        assert!("-5%".parse::<MaxGrowth>().is_err());
        assert_eq!(MaxGrowth::Percent(500).allowed(10_000), 500);
        assert_eq!(MaxGrowth::Percent(500).allowed(10_019), 500);
        assert_eq!(MaxGrowth::Percent(500).allowed(10_020), 501);
        assert_eq!(MaxGrowth::Percent(250).to_string(), "2.50%");
        assert_eq!(MaxGrowth::Percent(500).to_string(), "5%");
    }
}
