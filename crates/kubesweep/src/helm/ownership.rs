//! Which release really owns an object a release record names, and how far
//! a record's word goes.
//!
//! A record's manifest is a list of names, not a proof: since the record was
//! written, another release may have taken the object over (`helm install
//! --take-ownership`, or a re-annotation), the release may have been
//! uninstalled with `--keep-history` and the name re-used by someone else, or
//! the object may never have been Helm's. Helm writes its claim on every
//! object it creates or adopts, the annotations
//! `meta.helm.sh/release-name` and `meta.helm.sh/release-namespace`, and
//! checks them before it deletes (helm/helm#31584). kubesweep reads them the
//! same way: both naming the release is Helm's proof; either naming another
//! release is that release's object; none (or only part of the claim) is no
//! proof either way, and the planner asks the profile for another one.
//!
//! Pure: the planner calls it on live objects discovery read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::select::ReleaseKey;

/// Annotation naming the release that owns an object (Helm 3.2+).
pub const RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
/// Annotation naming that release's namespace.
pub const RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";

/// What an object's Helm annotations say about who owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseClaim {
    /// Both annotations name the release asked about.
    Ours,
    /// At least one annotation names something else: the release they name
    /// (`?` for the half that is missing).
    Other(ReleaseKey),
    /// No claim (no annotations, or only a part of them that agrees).
    Unclaimed,
}

/// The release an object's annotations name, when it carries any of them
/// (`?` for a missing half).
pub fn claimed_release(meta: &ObjectMeta) -> Option<ReleaseKey> {
    let annotations = meta.annotations.as_ref()?;
    let name = annotations.get(RELEASE_NAME_ANNOTATION);
    let namespace = annotations.get(RELEASE_NAMESPACE_ANNOTATION);
    if name.is_none() && namespace.is_none() {
        return None;
    }
    let or_unknown = |v: Option<&String>| v.cloned().unwrap_or_else(|| "?".to_owned());
    Some(ReleaseKey {
        namespace: or_unknown(namespace),
        name: or_unknown(name),
    })
}

/// What `meta`'s annotations say about `release` owning the object.
pub fn release_claim(meta: &ObjectMeta, release: &ReleaseKey) -> ReleaseClaim {
    let Some(claimed) = claimed_release(meta) else {
        return ReleaseClaim::Unclaimed;
    };
    let name_ok = claimed.name == release.name || claimed.name == "?";
    let namespace_ok = claimed.namespace == release.namespace || claimed.namespace == "?";
    match (name_ok, namespace_ok) {
        _ if claimed == *release => ReleaseClaim::Ours,
        (true, true) => ReleaseClaim::Unclaimed,
        _ => ReleaseClaim::Other(claimed),
    }
}

/// How far the manifest of the record acted on may be trusted, by its
/// `info.status`. `helm uninstall` acts on the latest revision whatever its
/// state; kubesweep does too, except where that revision no longer describes
/// what lives in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordTrust {
    /// `deployed`, `failed`, `pending-*`, `uninstalling`: the objects it names
    /// are the release's when their annotations say so (or, without
    /// annotations, with another proof).
    Current,
    /// `superseded` as the latest revision (a newer record was lost): only
    /// objects whose annotations name the release are its.
    AnnotatedOnly,
    /// `uninstalled` (kept with `--keep-history`): Helm already deleted what
    /// it owned; an object with one of its names now is someone else's or was
    /// kept on purpose. No object is deleted on its word; the records go.
    RecordsOnly,
}

/// The trust a record in state `status` earns.
pub fn record_trust(status: &str) -> RecordTrust {
    match status {
        "uninstalled" => RecordTrust::RecordsOnly,
        "superseded" => RecordTrust::AnnotatedOnly,
        _ => RecordTrust::Current,
    }
}
