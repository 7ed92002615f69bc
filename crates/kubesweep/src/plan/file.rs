//! Plan files: the JSON a saved plan is written as (the plan plus a top-level
//! `digest` of everything else) and the pure parse that refuses anything but
//! an unedited plan of this schema. No file system access here: the command
//! line reads and writes the bytes.

use super::model::{PLAN_SCHEMA_VERSION, Plan};

/// The field of a plan file that holds the digest of the rest.
pub const DIGEST_FIELD: &str = "digest";

/// Largest plan file read: far above any real plan (the blast-radius guard
/// refuses more than 2,000 actions by default), and it keeps a wrong file (a
/// disk image, a log) from being read whole into memory before the parser
/// can refuse it.
pub const MAX_PLAN_FILE_BYTES: usize = 64 * 1024 * 1024;

/// Why a plan file is refused. Each means: make a new plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// Larger than [`MAX_PLAN_FILE_BYTES`].
    #[error("is larger than {MAX_PLAN_FILE_BYTES} bytes: not a plan")]
    TooLarge,
    /// Not JSON, or JSON that is not a plan (truncated, wrong fields).
    #[error("{line}:{column}: {message}")]
    Syntax {
        /// 1-based line (0 when the error has no position).
        line: usize,
        /// 1-based column (0 when the error has no position).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A plan of another schema version.
    #[error(
        "has schema version {found}, this kubesweep reads version {PLAN_SCHEMA_VERSION}: \
         make a new plan with this kubesweep"
    )]
    Schema {
        /// The version in the file.
        found: u32,
    },
    /// The content no longer hashes to the recorded digest.
    #[error(
        "was changed after it was made (its digest is {recorded}, its content hashes to {actual}); \
         make a new plan instead of editing one"
    )]
    Edited {
        /// The digest in the file.
        recorded: String,
        /// The digest of the content read.
        actual: String,
    },
    /// No `digest` field (or not a string).
    #[error("has no digest: save plans with `kubesweep plan -o FILE` (or `-o json`)")]
    NoDigest,
}

impl From<serde_json::Error> for PlanFileError {
    fn from(e: serde_json::Error) -> Self {
        Self::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// `sha256:<hex>`, as a plan file records it.
fn recorded_digest(plan: &Plan) -> String {
    format!("sha256:{}", plan.digest())
}

/// The plan as pretty JSON with its digest as a top-level field.
pub fn to_plan_file(plan: &Plan) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(plan)?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            DIGEST_FIELD.into(),
            serde_json::Value::String(recorded_digest(plan)),
        );
    }
    serde_json::to_string_pretty(&value)
}

/// Parses a plan file: JSON of this schema whose content still hashes to its
/// recorded digest. Never panics; nesting beyond serde_json's recursion limit
/// (128) is a syntax error.
pub fn parse_plan_file(text: &str) -> Result<Plan, PlanFileError> {
    if text.len() > MAX_PLAN_FILE_BYTES {
        return Err(PlanFileError::TooLarge);
    }
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    let recorded = value
        .as_object_mut()
        .and_then(|m| m.remove(DIGEST_FIELD))
        .and_then(|d| d.as_str().map(str::to_owned));
    // The schema version first, so a plan of another version is named as
    // such rather than as whatever field it no longer has.
    if let Some(found) = value.get("schema_version").and_then(|v| v.as_u64())
        && found != u64::from(PLAN_SCHEMA_VERSION)
    {
        return Err(PlanFileError::Schema {
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    let plan: Plan = serde_json::from_value(value)?;
    if plan.schema_version != PLAN_SCHEMA_VERSION {
        return Err(PlanFileError::Schema {
            found: plan.schema_version,
        });
    }
    // A plan runs only as it was reviewed: any edit (an added delete, a
    // changed propagation, another cluster's UID) breaks the digest.
    let actual = recorded_digest(&plan);
    match recorded {
        Some(recorded) if recorded == actual => Ok(plan),
        Some(recorded) => Err(PlanFileError::Edited { recorded, actual }),
        None => Err(PlanFileError::NoDigest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::test_support::kubesphere_inventory;
    use crate::plan::{PlanOptions, plan};
    use crate::profile::Profile;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    /// Planned once: the property tests compare against it many times.
    static SAMPLE: LazyLock<(Plan, String)> = LazyLock::new(|| {
        let profile = Profile::builtin("kubesphere").expect("builtin profile");
        let plan = plan(&profile, &kubesphere_inventory(), &PlanOptions::default());
        let file = to_plan_file(&plan).expect("serialise");
        (plan, file)
    });

    fn sample() -> Plan {
        SAMPLE.0.clone()
    }

    fn sample_file() -> String {
        SAMPLE.1.clone()
    }

    #[test]
    fn a_saved_plan_reads_back_identical() {
        let plan = sample();
        assert!(plan.total_actions() > 10, "a plan worth testing");
        let read = parse_plan_file(&to_plan_file(&plan).expect("serialise")).expect("parse");
        assert_eq!(read, plan);
    }

    #[test]
    fn an_edit_a_missing_digest_another_schema_or_a_cut_is_refused() {
        let text = sample_file();
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");

        let mut edited = value.clone();
        edited["phases"][2]["actions"]
            .as_array_mut()
            .expect("actions")
            .clear();
        let err = parse_plan_file(&edited.to_string()).expect_err("edited");
        assert!(matches!(err, PlanFileError::Edited { .. }), "{err}");

        let mut unsigned = value.clone();
        unsigned.as_object_mut().expect("object").remove("digest");
        let err = parse_plan_file(&unsigned.to_string()).expect_err("no digest");
        assert!(matches!(err, PlanFileError::NoDigest), "{err}");

        value["schema_version"] = 3.into();
        let err = parse_plan_file(&value.to_string()).expect_err("schema");
        assert!(matches!(err, PlanFileError::Schema { found: 3 }), "{err}");

        let err = parse_plan_file(&text[..text.len() / 2]).expect_err("truncated");
        let PlanFileError::Syntax { line, column, .. } = err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(line > 1 && column > 0, "{line}:{column}");
    }

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let deep = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
            // serde_json's limit, which this test relies on, is 128 levels.
            let err = parse_plan_file(&deep).expect_err("too deep");
            assert!(err.to_string().contains("recursion limit"), "{err}");
        }
    }

    #[test]
    fn an_oversized_file_is_refused_before_parsing() {
        let huge = " ".repeat(MAX_PLAN_FILE_BYTES + 1);
        assert!(matches!(
            parse_plan_file(&huge),
            Err(PlanFileError::TooLarge)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_plan_file(&text);
        }

        #[test]
        fn truncated_or_flipped_plans_are_refused_or_unchanged(
            cut in 0.0f64..=1.0, flip in 0.0f64..1.0, bit in 0u8..8,
        ) {
            let text = sample_file();
            let mut bytes = text.clone().into_bytes();
            let at = ((bytes.len() as f64) * flip) as usize;
            bytes[at] ^= 1 << bit;
            bytes.truncate(((bytes.len() as f64) * cut) as usize);
            let damaged = String::from_utf8_lossy(&bytes);
            // Whatever survives parsing must be the plan that was signed: a
            // flip in insignificant whitespace is harmless, any other is refused.
            if let Ok(plan) = parse_plan_file(&damaged) {
                prop_assert_eq!(&plan, &SAMPLE.0);
            }
        }
    }
}
