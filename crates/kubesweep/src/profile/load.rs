//! Loading profiles: the built-in ones embedded at build time, and user files,
//! with errors that name the file, line and column, then semantic validation
//! so that a profile that parses but cannot prove anything is refused.

use super::model::{HelmExecutorRules, Profile};
use crate::profile::matching::{ALWAYS_PROTECTED_NAMESPACES, is_valid_domain};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Built-in profiles: (name, YAML).
const BUILTIN: &[(&str, &str)] = &[("kubesphere", include_str!("../../profiles/kubesphere.yaml"))];

/// Largest profile file read. The built-in profile is about 10 KiB; the cap
/// refuses a wrong file (a log, an image) before reading it whole or handing
/// it to the parser.
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// Domains that ownership rules may not name: every Kubernetes and SIG API
/// group (`apps`, `networking.k8s.io`, `gateway.networking.k8s.io`,
/// `cluster.x-k8s.io`...) is one of them or within them, so claiming one
/// would claim CRDs no platform owns. A profile may still name a group
/// *within* them exactly (`crds.names`, `crds.shared`).
pub const RESERVED_DOMAINS: [&str; 3] = ["k8s.io", "kubernetes.io", "x-k8s.io"];

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No built-in profile has this name.
    #[error("unknown built-in profile `{name}` (built-in profiles: {known})")]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// The file could not be read.
    #[error("failed to read profile {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PROFILE_BYTES`].
    #[error("profile {} is larger than {MAX_PROFILE_BYTES} bytes: not a profile", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The YAML is malformed or does not fit the format.
    #[error("invalid profile {origin}:{line}:{column}: {message}")]
    Parse {
        /// File path (or `builtin:<name>`).
        origin: String,
        /// 1-based line, 0 when unknown.
        line: u64,
        /// 1-based column, 0 when unknown.
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// The YAML parses but breaks a rule of the format.
    #[error("invalid profile {origin}: {field}: {message}")]
    Invalid {
        /// File path (or `builtin:<name>`).
        origin: String,
        /// Dotted path of the offending field, e.g. `crds.groups[1]`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Profile {
    /// Names of the built-in profiles.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(name, _)| *name).collect()
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            ProfileError::UnknownBuiltin {
                name: name.to_owned(),
                known: Self::builtin_names().join(", "),
            }
        })?;
        Self::from_yaml_str(text, &format!("builtin:{name}"))
    }

    /// Reads and validates a profile file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Profile, ProfileError> {
        let path = path.as_ref();
        let read_error = |source| ProfileError::Read {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PROFILE_BYTES + 1).read_to_string(&mut text))
            .map_err(read_error)?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge {
                path: path.to_owned(),
            });
        }
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// Parses and validates a profile; `origin` names the source in errors.
    /// Never panics; nesting deeper than serde-saphyr's budget (64 levels)
    /// and more than its 250,000 nodes are parse errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ProfileError::Parse {
                origin: origin.to_owned(),
                line,
                column,
                message: strip_location(
                    &first_line(&e.without_snippet().to_string()),
                    line,
                    column,
                ),
            }
        })?;
        profile
            .validate()
            .map_err(|(field, message)| ProfileError::Invalid {
                origin: origin.to_owned(),
                field,
                message,
            })?;
        Ok(profile)
    }

    /// Semantic checks; `Err((field, message))`.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        if !is_dns_label(&self.name) {
            return err("name".into(), "must be a lowercase DNS label");
        }
        if self.domains.is_empty() {
            return err("domains".into(), "must list at least one domain");
        }
        check_domains("domains", &self.domains)?;
        check_domains("crds.groups", &self.crds.groups)?;
        check_domains("finalizers.domains", &self.finalizers.domains)?;
        check_domains(
            "metadata.ownerReferences.groups",
            &self.metadata.owner_references.groups,
        )?;
        for (field, domains) in [
            ("domains", &self.domains),
            ("crds.groups", &self.crds.groups),
            ("finalizers.domains", &self.finalizers.domains),
            (
                "metadata.ownerReferences.groups",
                &self.metadata.owner_references.groups,
            ),
        ] {
            check_ownership_domains(field, domains)?;
        }
        check_domains("apiGroups", &self.api_groups)?;
        for (i, group) in self.api_groups.iter().enumerate() {
            if !self.owns_group(group) {
                return err(
                    format!("apiGroups[{i}]"),
                    "must lie within one of `domains` (or `crds.groups`)",
                );
            }
        }
        for (i, name) in self.crds.names.iter().enumerate() {
            match name.split_once('.') {
                Some((plural, group)) if is_dns_label(plural) && is_valid_domain(group) => {}
                _ => return err(format!("crds.names[{i}]"), "must be `plural.group`"),
            }
        }
        for (i, rule) in self.crds.shared.iter().enumerate() {
            let field = format!("crds.shared[{i}]");
            match (&rule.name, &rule.group) {
                (Some(name), None) if name.contains('.') && is_valid_domain(name) => {}
                (None, Some(group)) if is_valid_domain(group) => {}
                (Some(_), Some(_)) | (None, None) => {
                    return err(field, "set exactly one of `name` and `group`");
                }
                _ => return err(field, "not a valid CRD name or group"),
            }
            check_keys(
                &format!("{field}.platformLabels"),
                &rule.platform_labels,
                false,
            )?;
            check_keys(
                &format!("{field}.platformAnnotations"),
                &rule.platform_annotations,
                false,
            )?;
        }
        check_keys("finalizers.names", &self.finalizers.names, false)?;
        for (i, ns) in self.namespaces.delete.iter().enumerate() {
            let field = format!("namespaces.delete[{i}]");
            if !is_dns_label(ns) {
                return err(field, "not a valid namespace name");
            }
            if ALWAYS_PROTECTED_NAMESPACES.contains(&ns.as_str())
                || self.protected.namespaces.contains(ns)
            {
                return err(field, "a protected namespace is never deleted");
            }
        }
        for (i, rule) in self.namespaces.delete_when.iter().enumerate() {
            let field = format!("namespaces.deleteWhen[{i}]");
            if rule.prefix.len() < 2 || !rule.prefix.chars().all(is_dns_char) {
                return err(
                    field,
                    "prefix must be at least two namespace-name characters",
                );
            }
            if rule.labels.is_empty() {
                return err(field, "labels must name at least one label key (the proof)");
            }
            // The planner never deletes a protected namespace anyway; a rule
            // that names one is a mistake the author should hear about.
            let mut protected = ALWAYS_PROTECTED_NAMESPACES
                .iter()
                .copied()
                .chain(self.protected.namespaces.iter().map(String::as_str));
            if let Some(ns) = protected.find(|ns| ns.starts_with(&rule.prefix)) {
                return Err((
                    field,
                    format!(
                        "prefix `{}` would match the protected namespace `{ns}`",
                        rule.prefix
                    ),
                ));
            }
            check_keys(&format!("{field}.labels"), &rule.labels, false)?;
        }
        for (i, rule) in self
            .namespaces
            .created_by
            .iter()
            .chain(&self.helm.extension_releases)
            .chain(&self.helm.member_releases)
            .enumerate()
        {
            let field = format!("namespaces.createdBy[{i}]");
            if !is_valid_domain(&rule.crd) || !rule.crd.contains('.') {
                return err(field, "crd must be a CRD name `plural.group`");
            }
            if rule.paths.is_empty()
                || rule
                    .paths
                    .iter()
                    .any(|p| p.split('.').any(|s| s.is_empty()))
            {
                return err(field, "paths must be non-empty dotted field paths");
            }
        }
        if let Some(label) = &self.namespaces.project_label {
            check_keys(
                "namespaces.projectLabel",
                std::slice::from_ref(label),
                false,
            )?;
        }
        check_keys("metadata.labels", &self.metadata.labels, false)?;
        check_keys("metadata.annotations", &self.metadata.annotations, false)?;
        check_keys(
            "metadata.namespaceLabels",
            &self.metadata.namespace_labels,
            false,
        )?;
        check_keys(
            "metadata.namespaceAnnotations",
            &self.metadata.namespace_annotations,
            false,
        )?;
        for (i, gk) in self
            .metadata
            .owner_references
            .shared_kinds
            .iter()
            .enumerate()
        {
            if !is_valid_domain(&gk.group) || gk.kind.is_empty() {
                return err(
                    format!("metadata.ownerReferences.sharedKinds[{i}]"),
                    "needs a valid group and a kind",
                );
            }
        }
        for (field, services) in [
            ("webhooks.services", &self.webhooks.services),
            ("apiServices.services", &self.api_services.services),
            ("controllers", &self.controllers),
            ("helm.releases", &self.helm.releases),
        ] {
            for (i, s) in services.iter().enumerate() {
                if !is_dns_label(&s.namespace) || s.name.is_empty() {
                    return err(format!("{field}[{i}]"), "needs a namespace and a name");
                }
            }
        }
        check_keys("webhooks.names", &self.webhooks.names, false)?;
        check_keys("rbac.names", &self.rbac.names, false)?;
        check_keys("rbac.namePatterns", &self.rbac.name_patterns, true)?;
        check_keys("rbac.labels", &self.rbac.labels, true)?;
        check_keys("rbac.annotations", &self.rbac.annotations, true)?;
        check_keys("csrs.labels", &self.csrs.labels, false)?;
        if let Some(rules) = &self.helm_executor {
            check_helm_executor(rules)?;
        }
        for (i, ns) in self.protected.namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                return err(
                    format!("protected.namespaces[{i}]"),
                    "not a valid namespace name",
                );
            }
        }
        for (i, o) in self.protected.objects.iter().enumerate() {
            if o.kind.is_empty() || o.name.is_empty() {
                return err(format!("protected.objects[{i}]"), "needs a kind and a name");
            }
        }
        Ok(())
    }
}

/// The executor rules must keep a literal anchor in every name they match:
/// a short or empty prefix would let the extension name alone prove ownership.
fn check_helm_executor(rules: &HelmExecutorRules) -> Result<(), (String, String)> {
    let err =
        |field: &str, message: &str| Err((format!("helmExecutor.{field}"), message.to_owned()));
    check_keys(
        "helmExecutor.extensionLabel",
        std::slice::from_ref(&rules.extension_label),
        false,
    )?;
    let keys: Vec<String> = rules.labels.keys().cloned().collect();
    check_keys("helmExecutor.labels", &keys, false)?;
    if rules.kinds.is_empty() {
        return err("kinds", "must name at least one kind");
    }
    for (i, gk) in rules.kinds.iter().enumerate() {
        if gk.kind.is_empty() || !(gk.group.is_empty() || is_valid_domain(&gk.group)) {
            return err(
                &format!("kinds[{i}]"),
                "needs a kind and a valid (or empty) group",
            );
        }
    }
    if rules.name_prefixes.is_empty() {
        return err("namePrefixes", "must list at least one prefix");
    }
    check_keys("helmExecutor.namePrefixes", &rules.name_prefixes, false)?;
    let prefixes = rules.name_prefixes.iter().map(|p| ("namePrefixes", p));
    let sa = rules
        .service_account_prefix
        .iter()
        .map(|p| ("serviceAccountPrefix", p));
    for (field, prefix) in prefixes.chain(sa) {
        if prefix.len() < 3 || prefix.chars().any(char::is_whitespace) {
            return err(
                field,
                "a prefix needs at least three characters and no whitespace",
            );
        }
    }
    if rules.owner_kind.as_deref() == Some("") {
        return err("ownerKind", "must not be empty");
    }
    Ok(())
}

/// The parser appends " at line L, column C"; the error already says where.
fn strip_location(message: &str, line: u64, column: u64) -> String {
    message
        .strip_suffix(&format!(" at line {line}, column {column}"))
        .unwrap_or(message)
        .to_owned()
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

fn is_dns_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// RFC 1123 label: what namespace names are.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(is_dns_char)
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_domains(field: &str, domains: &[String]) -> Result<(), (String, String)> {
    for (i, d) in domains.iter().enumerate() {
        if d.is_empty() {
            return Err((format!("{field}[{i}]"), "must not be empty".into()));
        }
        if !is_valid_domain(d) {
            return Err((
                format!("{field}[{i}]"),
                format!("`{d}` is not a DNS domain (lowercase labels separated by dots)"),
            ));
        }
    }
    Ok(())
}

/// A domain that proves ownership of every group within it must be a real
/// domain of someone's: two labels at least (`io` would match every group
/// under `.io`) and not a Kubernetes-reserved one ([`RESERVED_DOMAINS`]).
fn check_ownership_domains(field: &str, domains: &[String]) -> Result<(), (String, String)> {
    for (i, d) in domains.iter().enumerate() {
        let bad = |m: String| Err((format!("{field}[{i}]"), m));
        if !d.contains('.') {
            return bad(format!(
                "`{d}` is a top-level domain: it would match every API group under it"
            ));
        }
        if let Some(reserved) = RESERVED_DOMAINS.iter().find(|r| *r == d) {
            return bad(format!(
                "`{reserved}` is Kubernetes' own: it would match the CRDs of every SIG project"
            ));
        }
    }
    Ok(())
}

/// Keys, names and patterns: non-empty, no whitespace. Patterns (`*` = one or
/// more characters) must keep at least three literal characters, so that no
/// pattern can match almost everything.
fn check_keys(field: &str, keys: &[String], patterns: bool) -> Result<(), (String, String)> {
    for (i, k) in keys.iter().enumerate() {
        let bad = |m: &str| Err((format!("{field}[{i}]"), format!("`{k}`: {m}")));
        if k.is_empty() {
            return bad("must not be empty");
        }
        if k.chars().any(char::is_whitespace) {
            return bad("must not contain whitespace");
        }
        if k.contains('*') {
            if !patterns {
                return bad("patterns are not allowed here");
            }
            if k.contains("**") {
                return bad("`**` is not a valid pattern");
            }
            if k.chars().filter(|c| *c != '*').count() < 3 {
                return bad("a pattern needs at least three literal characters");
            }
        }
    }
    Ok(())
}
