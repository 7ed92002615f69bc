//! Pure ownership predicates over a [`Profile`]: does this group, finalizer,
//! label, owner reference or object belong to the platform? Each answer is a
//! proof (dot-boundary domain, exact name, pattern with literal anchors,
//! platform-only key), never a substring guess.

use super::model::{HelmExecutorRules, Profile, SharedCrdRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeSet, HashSet};

/// Namespaces that are never deleted or finalized, whatever a profile says.
pub const ALWAYS_PROTECTED_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Whether `value` is `domain` or a subdomain of it, on a dot boundary:
/// `iam.kubesphere.io` is within `kubesphere.io`; `notkubesphere.io` and
/// `kubesphere.io.example.com` are not.
pub fn within_domain(value: &str, domain: &str) -> bool {
    !domain.is_empty()
        && (value == domain
            || value
                .strip_suffix(domain)
                .is_some_and(|head| head.ends_with('.')))
}

/// The domain part of a qualified key or finalizer (before the first `/`;
/// the whole value when there is none).
pub fn key_domain(key: &str) -> &str {
    key.split_once('/').map_or(key, |(domain, _)| domain)
}

/// The group of an `apiVersion` (`group/version`; empty for core `v1`).
pub fn api_version_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// Lowercase DNS domain: labels of `[a-z0-9-]` separated by single dots.
pub(crate) fn is_valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Glob match where `*` stands for one or more characters; everything else is literal.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((b'*', rest)) => (1..=v.len()).any(|i| go(rest, &v[i..])),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

/// How the profile relates to a CRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdRole<'a> {
    /// The platform's: the CRD and all its instances are removed.
    Owned,
    /// Possibly used by other software: only the platform's instances are
    /// removed, and the CRD only when asked and no foreign instance exists.
    Shared(&'a SharedCrdRule),
}

impl Profile {
    /// Whether `group` is one of the platform's API groups (dot boundary).
    pub fn owns_group(&self, group: &str) -> bool {
        self.domains
            .iter()
            .chain(&self.crds.groups)
            .any(|d| within_domain(group, d))
    }

    /// The profile's relation to the CRD `name` of API group `group`; shared
    /// rules win over owned groups, so a shared CRD is never removed as owned.
    pub fn crd_role(&self, name: &str, group: &str) -> Option<CrdRole<'_>> {
        if let Some(rule) = self.crds.shared.iter().find(|r| {
            r.name.as_deref() == Some(name)
                || r.group.as_deref().is_some_and(|g| within_domain(group, g))
        }) {
            return Some(CrdRole::Shared(rule));
        }
        if self.crds.names.iter().any(|n| n == name) || self.owns_group(group) {
            return Some(CrdRole::Owned);
        }
        None
    }

    /// Whether a finalizer is the platform's: its domain (before `/`) is a
    /// platform domain on a dot boundary, or it is listed exactly.
    pub fn is_platform_finalizer(&self, finalizer: &str) -> bool {
        let domain = key_domain(finalizer);
        self.finalizers.names.iter().any(|n| n == finalizer)
            || self
                .domains
                .iter()
                .chain(&self.finalizers.domains)
                .any(|d| within_domain(domain, d))
    }

    /// Whether an owner reference's `apiVersion` is in a platform group.
    pub fn is_platform_owner_group(&self, api_version: &str) -> bool {
        let group = api_version_group(api_version);
        !group.is_empty()
            && self
                .domains
                .iter()
                .chain(&self.crds.groups)
                .chain(&self.metadata.owner_references.groups)
                .any(|d| within_domain(group, d))
    }

    /// Label keys of `meta` to remove from a kept object (`namespace`: the
    /// object is a Namespace, which also loses the namespace-only keys).
    pub fn strippable_labels(&self, meta: &ObjectMeta, namespace: bool) -> Vec<String> {
        let extra: &[String] = if namespace {
            &self.metadata.namespace_labels
        } else {
            &[]
        };
        present_keys(meta.labels.as_ref(), &self.metadata.labels, extra)
    }

    /// Annotation keys of `meta` to remove from a kept object (see
    /// [`Profile::strippable_labels`]).
    pub fn strippable_annotations(&self, meta: &ObjectMeta, namespace: bool) -> Vec<String> {
        let extra: &[String] = if namespace {
            &self.metadata.namespace_annotations
        } else {
            &[]
        };
        present_keys(meta.annotations.as_ref(), &self.metadata.annotations, extra)
    }

    /// Platform finalizers of `meta`, in their order; everyone else's are kept.
    pub fn platform_finalizers(&self, meta: &ObjectMeta) -> Vec<String> {
        meta.finalizers
            .iter()
            .flatten()
            .filter(|f| self.is_platform_finalizer(f))
            .cloned()
            .collect()
    }

    /// UIDs of owner references to remove from a kept object: owners in a
    /// platform group, or of a shared kind whose owner UID is in
    /// `platform_shared_uids` (a proven platform instance of a shared CRD).
    pub fn platform_owner_reference_uids(
        &self,
        meta: &ObjectMeta,
        platform_shared_uids: &HashSet<String>,
    ) -> Vec<String> {
        meta.owner_references
            .iter()
            .flatten()
            .filter(|o| {
                self.is_platform_owner_group(&o.api_version)
                    || (self.is_shared_owner_kind(&o.api_version, &o.kind)
                        && platform_shared_uids.contains(&o.uid))
            })
            .map(|o| o.uid.clone())
            .collect()
    }

    /// Whether owners of this type are platform owners only by UID proof.
    pub fn is_shared_owner_kind(&self, api_version: &str, kind: &str) -> bool {
        let group = api_version_group(api_version);
        self.metadata
            .owner_references
            .shared_kinds
            .iter()
            .any(|gk| gk.group == group && gk.kind == kind)
    }

    /// Whether a (non-namespace) object may need cleaning: any platform
    /// label, annotation, finalizer, or an owner reference to a platform group
    /// or shared kind. Discovery uses it to choose what goes into
    /// `Inventory::kept_objects`.
    pub fn carries_platform_metadata(&self, meta: &ObjectMeta) -> bool {
        !self.strippable_labels(meta, false).is_empty()
            || !self.strippable_annotations(meta, false).is_empty()
            || !self.platform_finalizers(meta).is_empty()
            || self.has_platform_owner(meta)
    }

    /// Whether an owner reference names a platform kind (of a platform group,
    /// or a shared kind the platform also creates).
    pub fn has_platform_owner(&self, meta: &ObjectMeta) -> bool {
        meta.owner_references.iter().flatten().any(|o| {
            self.is_platform_owner_group(&o.api_version)
                || self.is_shared_owner_kind(&o.api_version, &o.kind)
        })
    }

    /// Whether discovery should keep an object that carries no platform
    /// metadata for the helm-executor checks: only the executor's
    /// ServiceAccount (by its name prefix) can be such a leftover.
    pub fn may_be_executor_leftover(&self, group: &str, kind: &str, meta: &ObjectMeta) -> bool {
        let Some(rules) = &self.helm_executor else {
            return false;
        };
        let name = meta.name.as_deref().unwrap_or_default();
        group.is_empty()
            && kind == "ServiceAccount"
            && rules
                .service_account_prefix
                .as_deref()
                .is_some_and(|p| name.len() > p.len() && name.starts_with(p))
    }

    /// Why an object in a namespace of the extensions `extensions` is a
    /// leftover of the platform's Helm executor, or `None` (see
    /// [`HelmExecutorRules`] for the proofs).
    pub fn executor_leftover_proof(
        &self,
        group: &str,
        kind: &str,
        meta: &ObjectMeta,
        extensions: &BTreeSet<String>,
    ) -> Option<String> {
        let rules = self.helm_executor.as_ref()?;
        let name = meta.name.as_deref()?;
        if group.is_empty() && kind == "ServiceAccount" {
            let ext = name.strip_prefix(rules.service_account_prefix.as_deref()?)?;
            return extensions
                .contains(ext)
                .then(|| format!("ServiceAccount the helm executor of extension `{ext}` acts as"));
        }
        if !rules
            .kinds
            .iter()
            .any(|k| k.group == group && k.kind == kind)
        {
            return None;
        }
        extensions.iter().find_map(|ext| {
            if !executor_name_matches(rules, name, ext) {
                return None;
            }
            if self.executor_labels_match(rules, meta, ext) {
                Some(format!(
                    "helm executor {kind} of extension `{ext}` (name and labels {})",
                    executor_label_list(rules, ext)
                ))
            } else {
                self.executor_owner_matches(rules, meta, ext).then(|| {
                    format!("helm executor {kind} of extension `{ext}` (name and owner {ext})")
                })
            }
        })
    }

    /// Every executor label with its value, and the extension label naming `ext`.
    fn executor_labels_match(
        &self,
        rules: &HelmExecutorRules,
        meta: &ObjectMeta,
        ext: &str,
    ) -> bool {
        let Some(labels) = &meta.labels else {
            return false;
        };
        labels.get(&rules.extension_label).map(String::as_str) == Some(ext)
            && rules.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// An owner reference of the executor's owner kind, named `ext`, in a platform group.
    fn executor_owner_matches(
        &self,
        rules: &HelmExecutorRules,
        meta: &ObjectMeta,
        ext: &str,
    ) -> bool {
        let Some(owner_kind) = &rules.owner_kind else {
            return false;
        };
        meta.owner_references.iter().flatten().any(|o| {
            &o.kind == owner_kind && o.name == ext && self.is_platform_owner_group(&o.api_version)
        })
    }

    /// Whether a namespace is never deleted or finalized.
    pub fn is_protected_namespace(&self, name: &str) -> bool {
        ALWAYS_PROTECTED_NAMESPACES.contains(&name)
            || self.protected.namespaces.iter().any(|n| n == name)
    }

    /// Whether an object is protected by `protected.objects`.
    pub fn is_protected_object(&self, kind: &str, namespace: Option<&str>, name: &str) -> bool {
        self.protected.objects.iter().any(|o| {
            o.kind == kind
                && o.name == name
                && (o.namespace.is_none() || o.namespace.as_deref() == namespace)
        })
    }

    /// Why an RBAC object (ClusterRole, ClusterRoleBinding, Role,
    /// RoleBinding) is the platform's, or `None`. Proofs: exact name
    /// (cluster-scoped kinds only), name pattern, platform-only label or
    /// annotation key, owner reference to a platform group.
    pub fn rbac_proof(&self, kind: &str, meta: &ObjectMeta) -> Option<String> {
        let name = meta.name.as_deref().unwrap_or_default();
        let cluster_scoped = kind.starts_with("Cluster");
        if self.is_protected_object(kind, meta.namespace.as_deref(), name) {
            return None;
        }
        if cluster_scoped && self.rbac.names.iter().any(|n| n == name) {
            return Some(format!("{kind} name `{name}` is listed by the profile"));
        }
        if let Some(p) = self
            .rbac
            .name_patterns
            .iter()
            .find(|p| pattern_matches(p, name))
        {
            return Some(format!("name matches the profile pattern `{p}`"));
        }
        if let Some(key) = meta
            .labels
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .find(|k| self.rbac.labels.iter().any(|p| pattern_matches(p, k)))
        {
            return Some(format!("carries the platform label `{key}`"));
        }
        if let Some(key) = meta
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .find(|k| self.rbac.annotations.iter().any(|p| pattern_matches(p, k)))
        {
            return Some(format!("carries the platform annotation `{key}`"));
        }
        self.platform_owner_proof(meta)
    }

    /// Why an object with an owner reference into a platform group is the platform's.
    pub fn platform_owner_proof(&self, meta: &ObjectMeta) -> Option<String> {
        meta.owner_references
            .iter()
            .flatten()
            .find(|o| self.is_platform_owner_group(&o.api_version))
            .map(|o| format!("owned by {} {} ({})", o.kind, o.name, o.api_version))
    }

    /// Why a CSR is the platform's, or `None`.
    pub fn csr_proof(&self, meta: &ObjectMeta) -> Option<String> {
        meta.labels
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .find(|k| self.csrs.labels.contains(k))
            .map(|k| format!("carries the platform label `{k}`"))
    }

    /// Whether an instance of a shared CRD is provably the platform's (see
    /// [`SharedCrdRule`]); namespace membership is decided by the caller.
    pub fn shared_instance_is_platform(&self, rule: &SharedCrdRule, meta: &ObjectMeta) -> bool {
        meta.labels
            .iter()
            .flatten()
            .any(|(k, _)| rule.platform_labels.contains(k))
            || meta
                .annotations
                .iter()
                .flatten()
                .any(|(k, _)| rule.platform_annotations.contains(k))
            || !self.platform_finalizers(meta).is_empty()
    }
}

/// `<prefix><ext>-<suffix>` for one of the executor's prefixes, with a
/// non-empty suffix (the executor appends a random one).
fn executor_name_matches(rules: &HelmExecutorRules, name: &str, ext: &str) -> bool {
    rules.name_prefixes.iter().any(|prefix| {
        name.strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix(ext))
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|suffix| !suffix.is_empty())
    })
}

fn executor_label_list(rules: &HelmExecutorRules, ext: &str) -> String {
    rules
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(std::iter::once(format!("{}={ext}", rules.extension_label)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn present_keys(
    map: Option<&std::collections::BTreeMap<String, String>>,
    wanted: &[String],
    extra: &[String],
) -> Vec<String> {
    map.map(|m| {
        m.keys()
            .filter(|k| wanted.contains(k) || extra.contains(k))
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}
