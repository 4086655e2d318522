//! The JSON Schema of `cargo airlock report --format json`, generated from the report's
//! types and committed as `docs/report.schema.json` (a test keeps the file fresh).

use super::model::SizeReport;

/// The schema, as pretty JSON with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(SizeReport);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `AIRLOCK_BLESS=1 cargo test --lib report::schema` rewrites the committed file.
    #[test]
    fn committed_schema_is_fresh() {
        crate::assert_generated_file_is_fresh(
            "docs/report.schema.json",
            &json_schema(),
            "report::schema",
        );
    }
}
