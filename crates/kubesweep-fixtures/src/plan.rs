//! The seed plan: every object to create as a full manifest, with the field manager that writes it,
//! the owners whose UIDs are filled in at apply time, and the stage it belongs to. Pure data, built
//! by the profiles and executed by [`crate::seed`].

use kube::Resource;
use kube::core::ApiResource;
use serde_json::{Map, Value, json};

use crate::crds::CrdDef;
use crate::footprint::{Footprint, ObjectKey, Role, SeededObject};
use crate::scale::Scale;

/// When an item is written, relative to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Before the CRDs (the foreign Local APIService, so the CRD autoregistration leaves it alone).
    First,
    /// CRDs, then wait until Established.
    Crds,
    /// Ordinary objects, in waves derived from their namespace and owners.
    Objects,
    /// Pre-existing system namespaces: merge patches that add keys, never a replace.
    SystemPatch,
    /// Admission webhooks and aggregated APIServices pointing at missing Services: written last
    /// because they would reject or break the writes before them.
    Last,
}

/// A reference to an owner whose UID is only known once it exists in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerSpec {
    /// `apiVersion` written into the reference (may be an older served version, as 3.x wrote).
    pub api_version: String,
    /// The owner's key as seeded (used to look the UID up).
    pub key: ObjectKey,
    /// `controller: true`.
    pub controller: bool,
    /// `blockOwnerDeletion: true`.
    pub block_owner_deletion: bool,
}

/// One object of the plan.
#[derive(Debug, Clone)]
pub(crate) struct SeedItem {
    /// Manifest entry.
    pub object: SeededObject,
    /// Full manifest (for [`Stage::SystemPatch`]: the keys KubeSphere adds).
    pub manifest: Value,
    /// For [`Stage::SystemPatch`]: the keys another vendor adds, written as a separate patch.
    pub foreign_patch: Option<Value>,
    /// Field manager, chosen like the real writer's so managedFields look ordinary.
    pub manager: &'static str,
    /// Owners to reference.
    pub owners: Vec<OwnerSpec>,
    /// Stage.
    pub stage: Stage,
}

impl SeedItem {
    pub(crate) fn resource(&self) -> ApiResource {
        self.object.api_resource()
    }
}

/// Field managers.
pub(crate) const KS_MANAGER: &str = "ks-controller-manager";
pub(crate) const HELM_MANAGER: &str = "helm";
pub(crate) const HOOK_MANAGER: &str = "kubectl-label";
pub(crate) const USER_MANAGER: &str = "kubectl";
pub(crate) const FOREIGN_MANAGER: &str = "acme-operator";

/// A plan under construction.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub items: Vec<SeedItem>,
    /// Keys already planned: a profile that names one object twice is a bug.
    keys: std::collections::HashSet<ObjectKey>,
}

/// Metadata for a new object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub labels: Map<String, Value>,
    pub annotations: Map<String, Value>,
    pub finalizers: Vec<String>,
    pub owners: Vec<OwnerSpec>,
    pub terminating: bool,
}

impl Meta {
    pub fn new() -> Self {
        Meta::default()
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    pub fn finalizer(mut self, f: &str) -> Self {
        self.finalizers.push(f.into());
        self
    }
    pub fn finalizers(mut self, fs: &[&str]) -> Self {
        self.finalizers.extend(fs.iter().map(|f| f.to_string()));
        self
    }
    pub fn owner(mut self, owner: OwnerSpec) -> Self {
        self.owners.push(owner);
        self
    }
    pub fn terminating(mut self) -> Self {
        self.terminating = true;
        self
    }
}

/// The address of a typed k8s-openapi kind, so core objects need no hand-written plurals.
pub(crate) fn typed<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

impl Plan {
    /// Adds an object of any kind. `body` holds everything except apiVersion, kind and metadata.
    #[allow(clippy::too_many_arguments)] // Each argument is a distinct part of the object.
    pub fn add(
        &mut self,
        ar: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        role: Role,
        manager: &'static str,
        meta: Meta,
        body: Value,
    ) -> ObjectKey {
        self.add_staged(
            ar,
            namespace,
            name,
            role,
            manager,
            meta,
            body,
            Stage::Objects,
        )
    }

    #[allow(clippy::too_many_arguments)] // Each argument is a distinct part of the object.
    pub fn add_staged(
        &mut self,
        ar: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        role: Role,
        manager: &'static str,
        meta: Meta,
        body: Value,
        stage: Stage,
    ) -> ObjectKey {
        let key = ObjectKey {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        let mut metadata = Map::new();
        metadata.insert("name".into(), name.into());
        if let Some(ns) = namespace {
            metadata.insert("namespace".into(), ns.into());
        }
        if !meta.labels.is_empty() {
            metadata.insert("labels".into(), Value::Object(meta.labels));
        }
        if !meta.annotations.is_empty() {
            metadata.insert("annotations".into(), Value::Object(meta.annotations));
        }
        if !meta.finalizers.is_empty() {
            metadata.insert("finalizers".into(), json!(meta.finalizers));
        }
        let mut manifest = match body {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => panic!("object body must be a map, got {other}"),
        };
        manifest.insert("apiVersion".into(), ar.api_version.clone().into());
        manifest.insert("kind".into(), ar.kind.clone().into());
        manifest.insert("metadata".into(), Value::Object(metadata));
        assert!(self.keys.insert(key.clone()), "the plan holds {key} twice");
        self.items.push(SeedItem {
            object: SeededObject {
                key: key.clone(),
                plural: ar.plural.clone(),
                role,
                finalizers: meta.finalizers,
                terminating: meta.terminating,
            },
            manifest: Value::Object(manifest),
            foreign_patch: None,
            manager,
            owners: meta.owners,
            stage,
        });
        key
    }

    /// Adds an instance of a CRD, written at its storage version.
    pub fn cr(
        &mut self,
        crd: &CrdDef,
        namespace: Option<&str>,
        name: &str,
        role: Role,
        meta: Meta,
        body: Value,
    ) -> ObjectKey {
        let manager = match role {
            Role::Foreign => FOREIGN_MANAGER,
            Role::User => USER_MANAGER,
            _ => KS_MANAGER,
        };
        self.add(
            &crd.api_resource(),
            namespace,
            name,
            role,
            manager,
            meta,
            body,
        )
    }

    /// Adds a CRD.
    pub fn crd(&mut self, crd: &CrdDef, role: Role) {
        let ar = typed::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>();
        let mut manifest = crd.manifest();
        let mut meta = Meta::new();
        let body = match manifest.as_object_mut() {
            Some(m) => {
                if let Some(metadata) = m.remove("metadata") {
                    let map = |k: &str| metadata[k].as_object().cloned().unwrap_or_default();
                    meta.labels = map("labels");
                    meta.annotations = map("annotations");
                }
                Value::Object(std::mem::take(m))
            }
            None => Value::Null,
        };
        let manager = if role == Role::Foreign {
            FOREIGN_MANAGER
        } else {
            HELM_MANAGER
        };
        self.add_staged(
            &ar,
            None,
            &crd.name(),
            role,
            manager,
            meta,
            body,
            Stage::Crds,
        );
    }

    /// Records a pre-existing system namespace and the keys KubeSphere and another vendor add to it.
    pub fn system_namespace(&mut self, name: &str, kubesphere: Meta, foreign: Meta) {
        let ar = typed::<k8s_openapi::api::core::v1::Namespace>();
        let patch = |m: &Meta| json!({"metadata": {"labels": m.labels, "annotations": m.annotations, "finalizers": m.finalizers}});
        let mut finalizers = kubesphere.finalizers.clone();
        finalizers.extend(foreign.finalizers.iter().cloned());
        self.items.push(SeedItem {
            object: SeededObject {
                key: ObjectKey {
                    api_version: "v1".into(),
                    kind: "Namespace".into(),
                    namespace: None,
                    name: name.into(),
                },
                plural: ar.plural,
                role: Role::SystemNamespace,
                finalizers,
                terminating: false,
            },
            manifest: patch(&kubesphere),
            foreign_patch: Some(patch(&foreign)),
            manager: HOOK_MANAGER,
            owners: vec![],
            stage: Stage::SystemPatch,
        });
    }

    /// The manifest of what this plan seeds.
    pub fn footprint(&self, profile: &str, scale: Scale) -> Footprint {
        Footprint {
            profile: profile.to_string(),
            scale,
            objects: self.items.iter().map(|i| i.object.clone()).collect(),
        }
    }
}

/// An owner reference to fill in at apply time.
pub(crate) fn owner(
    key: &ObjectKey,
    api_version: Option<&str>,
    controller: bool,
    block: bool,
) -> OwnerSpec {
    OwnerSpec {
        api_version: api_version.map_or_else(|| key.api_version.clone(), str::to_string),
        key: key.clone(),
        controller,
        block_owner_deletion: block,
    }
}
