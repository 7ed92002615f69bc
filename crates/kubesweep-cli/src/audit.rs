//! The audit record of an `apply`: one JSON line per write kubesweep made
//! (or tried), with the object, its UID, the operation, the plan's reason,
//! the outcome and the time, appended as each action finishes (so a run
//! that is killed still leaves the record of what it did) and fsynced when
//! the run ends. It is what an operator attaches to an incident report.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use kubesweep::execute::{
    ActionReport, NamespacePath, NamespaceWay, Outcome, PhaseReport, Progress,
};
use kubesweep::plan::{Operation, PhaseId, Plan};
use serde_json::{Value, json};

use crate::exit::{CliError, Exit};

/// An audit file being written, and the progress display it passes events on to.
pub struct Audit<'a> {
    inner: &'a dyn Progress,
    file: Mutex<File>,
    path: PathBuf,
    /// Per (phase, UID): the plan's reason and the operation as planned.
    planned: HashMap<(PhaseId, String), (String, Operation)>,
}

impl<'a> Audit<'a> {
    /// Creates `kubesweep-audit-<UTC time>-<cluster>.jsonl` in `dir` (mode
    /// 0600: it names every object touched) for a run of `plan`.
    pub fn create(dir: &Path, plan: &Plan, inner: &'a dyn Progress) -> Result<Self, CliError> {
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let cluster: String = plan.cluster.kube_system_uid.chars().take(8).collect();
        let base = format!("kubesweep-audit-{time}-{cluster}");
        let fail = |path: &Path, e: std::io::Error| {
            CliError::new(
                Exit::Backup,
                format!(
                    "failed to create the audit record {}, nothing was changed: {e}",
                    path.display()
                ),
            )
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
        let mut options = std::fs::OpenOptions::new();
        options.create_new(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        // Two runs within the same second would get the same name: never
        // append to another run's record, take the next free one.
        let mut n = 1;
        let (file, path) = loop {
            let name = if n == 1 {
                format!("{base}.jsonl")
            } else {
                format!("{base}-{n}.jsonl")
            };
            let path = dir.join(name);
            match options.open(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(fail(&path, e)),
            }
        };
        let planned = plan
            .actions()
            .map(|(phase, a)| {
                (
                    (phase, a.target.uid.clone()),
                    (a.reason.clone(), a.operation.clone()),
                )
            })
            .collect();
        Ok(Self {
            inner,
            file: Mutex::new(file),
            path,
            planned,
        })
    }

    /// Where the record is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a write made outside the plan's phases (scaling a controller
    /// down for `--stop-controllers`).
    pub fn record(&self, entry: Value) {
        let mut entry = entry;
        if let Some(map) = entry.as_object_mut() {
            map.insert("time".into(), json!(now()));
        }
        self.append(&entry);
    }

    /// Flushes the record to disk.
    pub fn finish(&self) -> Result<(), CliError> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.sync_all().map_err(|e| {
            CliError::new(
                Exit::Leftovers,
                format!(
                    "failed to sync the audit record {}: {e}",
                    self.path.display()
                ),
            )
        })
    }

    fn append(&self, entry: &Value) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line: a line is never interleaved with another.
        let line = format!("{entry}\n");
        if let Err(err) = file.write_all(line.as_bytes()) {
            tracing::error!(path = %self.path.display(), error = %err, "audit record write failed");
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The audit line of one finished action.
pub fn action_entry(
    phase: PhaseId,
    report: &ActionReport,
    planned: Option<&(String, Operation)>,
) -> Value {
    let target = &report.target;
    let (result, message) = match &report.outcome {
        Outcome::Done { detail } => ("done", detail.clone()),
        Outcome::AlreadyGone => ("already-gone", None),
        Outcome::SkippedStale { found_uid } => (
            "skipped-stale",
            Some(format!("the name now belongs to uid {found_uid}")),
        ),
        Outcome::Skipped { reason } => ("skipped", Some(reason.clone())),
        Outcome::Failed { message } => ("failed", Some(message.clone())),
    };
    json!({
        "time": now(),
        "phase": phase,
        "apiVersion": target.resource.api_version(),
        "kind": target.resource.kind,
        "namespace": target.namespace,
        "name": target.name,
        "uid": target.uid,
        "operation": planned.map(|(_, op)| serde_json::to_value(op).unwrap_or(Value::Null)),
        "reason": planned.map(|(reason, _)| reason.clone()),
        "result": result,
        "message": message,
        "durationMs": report.duration_ms,
    })
}

impl Progress for Audit<'_> {
    fn phase_started(&self, phase: PhaseId, actions: usize) {
        self.inner.phase_started(phase, actions);
    }

    fn action_finished(&self, phase: PhaseId, report: &ActionReport) {
        let planned = self.planned.get(&(phase, report.target.uid.clone()));
        self.append(&action_entry(phase, report, planned));
        self.inner.action_finished(phase, report);
    }

    fn waiting(&self, phase: PhaseId, remaining: usize, elapsed: Duration) {
        self.inner.waiting(phase, remaining, elapsed);
    }

    fn phase_finished(&self, report: &PhaseReport) {
        self.inner.phase_finished(report);
    }

    fn fast_path_write(&self, report: &ActionReport) {
        // Not a planned action: the operation is the report's own word.
        let mut entry = action_entry(PhaseId::Namespaces, report, None);
        entry["operation"] = json!(report.operation);
        entry["reason"] = json!("content of a terminating platform namespace (fast path)");
        self.append(&entry);
        self.inner.fast_path_write(report);
    }

    fn namespace_path(&self, path: &NamespacePath) {
        // Shaped like a write's line: on the fast path it is the record of
        // the `/finalize` kubesweep sent; otherwise of the write it did not make.
        let (operation, result) = match path.way {
            NamespaceWay::Fast => ("finalize (namespace fast path)", "done"),
            NamespaceWay::Controller => ("none (left to the namespace controller)", "skipped"),
        };
        self.append(&json!({
            "time": now(),
            "phase": PhaseId::Namespaces,
            "event": "namespace-path",
            "apiVersion": "v1",
            "kind": "Namespace",
            "namespace": path.namespace,
            "name": path.namespace,
            "uid": path.uid,
            "operation": operation,
            "reason": "the platform namespace's content, emptied by kubesweep where it can prove it empty",
            "result": result,
            "way": path.way,
            "deleted": path.deleted,
            "message": path.detail,
        }));
        self.inner.namespace_path(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesweep::plan::Propagation;
    use kubesweep::resource::{ObjectRef, ResourceType};

    #[test]
    fn an_action_line_names_the_object_the_operation_the_reason_and_the_result() {
        let report = ActionReport {
            target: ObjectRef {
                resource: ResourceType {
                    group: "tenant.kubesphere.io".into(),
                    version: "v1beta1".into(),
                    kind: "Workspace".into(),
                    plural: "workspaces".into(),
                    namespaced: false,
                },
                namespace: None,
                name: "demo".into(),
                uid: "u-1".into(),
                resource_version: "7".into(),
            },
            operation: "delete".into(),
            outcome: Outcome::Failed {
                message: "forbidden".into(),
            },
            duration_ms: 12,
        };
        let planned = (
            "instance of the platform CRD".to_owned(),
            Operation::Delete {
                propagation: Propagation::Orphan,
            },
        );
        let line = action_entry(PhaseId::CustomResources, &report, Some(&planned));
        assert_eq!(line["phase"], "custom-resources");
        assert_eq!(line["apiVersion"], "tenant.kubesphere.io/v1beta1");
        assert_eq!(line["kind"], "Workspace");
        assert_eq!(line["uid"], "u-1");
        assert_eq!(line["operation"]["propagation"], "Orphan");
        assert_eq!(line["reason"], "instance of the platform CRD");
        assert_eq!(line["result"], "failed");
        assert_eq!(line["message"], "forbidden");
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
