//! Server-side request counts: the API server's own audit log, not the
//! client's word. The bench starts its control plane with [`POLICY`], which
//! logs every request once, when its response is complete; a contender's
//! requests are the lines written while it ran ([`Window`]: byte offsets of
//! the log) by the admin user every contender runs as. The testenv
//! controller manager uses the same admin credentials, so its requests (the
//! namespace controller's and the garbage collector's, above all) are told
//! apart by their user agent and counted apart, as is everyone else. Counting is pure; reading the log is the edge.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The audit policy: metadata of every request, once (no `RequestReceived`
/// stage, so one line per request).
pub const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

/// Requests the server saw in one window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// The contender's requests by verb (`get`, `list`, `watch`, `patch`,
    /// `delete`, `deletecollection`, ...).
    pub by_verb: BTreeMap<String, u64>,
    /// Requests of every other user in the same window (controllers).
    pub others: u64,
    /// Of those, the controller manager's (namespace controller, garbage
    /// collector, ...), by its user agent.
    pub controller_manager: u64,
}

impl RequestCounts {
    /// The contender's requests, all verbs.
    pub fn total(&self) -> u64 {
        self.by_verb.values().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &RequestCounts) {
        for (verb, n) in &other.by_verb {
            *self.by_verb.entry(verb.clone()).or_default() += n;
        }
        self.others += other.others;
        self.controller_manager += other.controller_manager;
    }

    /// These counts with every figure multiplied by `factor` (an
    /// extrapolation), rounded.
    pub fn scaled(&self, factor: f64) -> RequestCounts {
        let scale = |n: u64| (n as f64 * factor).round() as u64;
        RequestCounts {
            by_verb: self
                .by_verb
                .iter()
                .map(|(v, n)| (v.clone(), scale(*n)))
                .collect(),
            others: scale(self.others),
            controller_manager: scale(self.controller_manager),
        }
    }
}

/// Counts the audit lines in `text` (JSON lines; partial or foreign lines
/// are skipped): `user`'s by verb, everyone else's apart.
pub fn count(text: &str, user: &str) -> RequestCounts {
    let mut counts = RequestCounts::default();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["kind"] != "Event" || event["stage"] != "ResponseComplete" {
            continue;
        }
        let username = event["user"]["username"].as_str().unwrap_or_default();
        let controller_manager = event["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("kube-controller-manager/"));
        if username == user && !controller_manager {
            let verb = event["verb"].as_str().unwrap_or("unknown").to_owned();
            *counts.by_verb.entry(verb).or_default() += 1;
        } else {
            counts.others += 1;
            if controller_manager {
                counts.controller_manager += 1;
            }
        }
    }
    counts
}

/// The audit log of the bench's control plane and the user whose requests
/// count.
#[derive(Clone, Debug)]
pub struct AuditLog {
    /// The log file kube-apiserver writes.
    pub path: PathBuf,
    /// The contenders' user (the admin of the testenv kubeconfig).
    pub user: String,
}

impl AuditLog {
    /// The log's current end: where the next window starts.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Counts the requests logged between two marks. A log that shrank
    /// was rotated (kube-apiserver rotates at `--audit-log-maxsize`, 100 MB
    /// unless set higher): the window cannot be counted, and that is an error
    /// rather than a wrong count.
    pub fn count(&self, from: u64, to: u64) -> anyhow::Result<RequestCounts> {
        if to < from {
            anyhow::bail!(
                "the audit log {} was rotated during a measurement: start kube-apiserver with a larger --audit-log-maxsize",
                self.path.display()
            );
        }
        Ok(count(&read_range(&self.path, from, to)?, &self.user))
    }
}

fn read_range(path: &Path, from: u64, to: u64) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(to.saturating_sub(from)).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_users_requests_by_verb_and_the_rest_apart() {
        let line = |user: &str, verb: &str, stage: &str| {
            let agent = if user.contains("controller") {
                "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/$Format"
            } else {
                "kubesweep/0.1.0"
            };
            serde_json::json!({"kind": "Event", "stage": stage, "verb": verb,
                "user": {"username": user}, "userAgent": agent})
            .to_string()
        };
        let text = [
            line("kubesweep-admin", "delete", "ResponseComplete"),
            line("kubesweep-admin", "delete", "ResponseComplete"),
            line("kubesweep-admin", "list", "ResponseComplete"),
            line("kubesweep-admin", "watch", "ResponseStarted"),
            line("system:kube-controller-manager", "list", "ResponseComplete"),
            line(
                "system:serviceaccount:kube-system:namespace-controller",
                "deletecollection",
                "ResponseComplete",
            ),
            line("system:apiserver", "get", "ResponseComplete"),
            "{\"kind\":\"Event\",\"stage\":\"Respo".to_owned(),
        ]
        .join("\n");
        let counts = count(&text, "kubesweep-admin");
        assert_eq!(counts.by_verb["delete"], 2);
        assert_eq!(counts.by_verb["list"], 1);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.others, 3);
        assert_eq!(counts.controller_manager, 2);
        assert_eq!(counts.scaled(2.0).total(), 6);
    }
}
