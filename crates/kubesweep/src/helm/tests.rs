//! Tests of the Helm part on records written by the real helm (captured from
//! the test control plane into `tests/data/helm/`), on corrupted records,
//! property tests that decoding and parsing never panic, and the planner's
//! Helm phases on an inventory built from the captured records.

use kube::api::DynamicObject;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::inventory::Inventory;
use crate::plan::test_support::{crd, namespace, obj, rt};
use crate::plan::{Finding, Operation, PhaseId, PlanOptions, plan};
use crate::profile::Profile;

/// helm v3.22.0 `install` then `upgrade` of a small chart (Secret driver).
const SECRET_RECORDS: &str = include_str!("../../tests/data/helm/capture-secret-driver.json");
/// helm v3.22.0 `install` with `HELM_DRIVER=configmap`.
const CONFIGMAP_RECORDS: &str = include_str!("../../tests/data/helm/capture-configmap-driver.json");

fn records(text: &str, driver: StorageDriver) -> Vec<(StorageDriver, DynamicObject)> {
    let value: Value = serde_json::from_str(text).expect("captured records");
    value["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (driver, serde_json::from_value(i.clone()).expect("object")))
        .collect()
}

fn profile() -> Profile {
    Profile::builtin("kubesphere").expect("builtin profile")
}

#[test]
fn real_secret_records_decode_and_the_deployed_revision_is_used() {
    let recs = records(SECRET_RECORDS, StorageDriver::Secret);
    let first = decode_stored_record(&recs[0].1).expect("decode v1");
    assert_eq!((first.name.as_str(), first.version), ("capture", 1));
    let observed = summarise(recs);
    assert!(observed.unreadable.is_empty());
    let [release] = observed.releases.as_slice() else {
        panic!("one release: {:?}", observed.releases);
    };
    assert_eq!(release.revision, 2);
    assert_eq!(release.status, "deployed");
    assert_eq!(release.chart, "capture-0.1.0");
    assert_eq!(release.records.len(), 2, "every revision's record");
    let objects: Vec<String> = release.objects.iter().map(|o| o.describe()).collect();
    assert_eq!(
        objects,
        ["ConfigMap capture-config", "ClusterRole capture-reader"]
    );
    assert_eq!(
        release.objects[0]
            .labels
            .get("kubesphere.io/extension-ref")
            .map(String::as_str),
        Some("capture")
    );
    assert_eq!(release.chart_crds.len(), 1);
    assert_eq!(release.chart_crds[0].name, "captures.capture.kubesphere.io");
    assert!(release.problems.is_empty(), "{:?}", release.problems);
}

#[test]
fn real_configmap_records_decode() {
    let observed = summarise(records(CONFIGMAP_RECORDS, StorageDriver::ConfigMap));
    let [release] = observed.releases.as_slice() else {
        panic!("one release");
    };
    assert_eq!(release.name, "capture-cm");
    assert_eq!(release.driver, Some(StorageDriver::ConfigMap));
    assert_eq!(release.objects.len(), 2);
}

#[test]
fn a_corrupted_record_is_reported_and_still_attributed_to_its_release() {
    let mut recs = records(SECRET_RECORDS, StorageDriver::Secret);
    // The API layer decodes to "not gzip nor json", which is not Helm's base64.
    recs[1].1.data["data"]["release"] = json!("bm90IGd6aXAgbm9yIGpzb24=");
    let observed = summarise(recs);
    assert_eq!(observed.unreadable.len(), 1);
    assert!(
        observed.unreadable[0]
            .message
            .contains("not valid base64 (helm)"),
        "{}",
        observed.unreadable[0].message
    );
    // v1 still decodes: the release is known, with both records.
    assert_eq!(observed.releases[0].revision, 1);
    assert_eq!(observed.releases[0].records.len(), 2);
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_release(&bytes);
    }

    #[test]
    fn decoding_arbitrary_gzip_payloads_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        use base64::Engine;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&payload).expect("gzip");
        let value = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
        let _ = decode_release(value.as_bytes());
    }

    #[test]
    fn truncated_or_flipped_real_records_never_panic(cut in 0usize..2000, flip in 0usize..2000) {
        let recs = records(SECRET_RECORDS, StorageDriver::Secret);
        let mut object = recs[1].1.clone();
        let value = object.data["data"]["release"].as_str().expect("release").to_owned();
        let mut bytes = value.into_bytes();
        let at = flip % bytes.len().max(1);
        if let Some(b) = bytes.get_mut(at) { *b ^= 0x5a; }
        bytes.truncate(cut.min(bytes.len()));
        object.data["data"]["release"] = Value::String(String::from_utf8_lossy(&bytes).into_owned());
        let _ = decode_stored_record(&object);
    }

    #[test]
    fn parsing_arbitrary_manifests_never_panics(text in "(---\n|[a-z:{}\\[\\] \n-]|apiVersion: v1\n|kind: X\n){0,40}") {
        let _ = parse_manifest(&text);
        let _ = chart_crds(&[("crds/x.yaml".to_owned(), text)]);
    }
}

/// The captured release, selected because its objects carry the extension
/// label, with its live objects as discovery reads them.
fn inventory_with_release(extra_live: Vec<LiveObject>) -> Inventory {
    let mut inventory = Inventory {
        helm: summarise(records(SECRET_RECORDS, StorageDriver::Secret)),
        ..Inventory::default()
    };
    let release = &mut inventory.helm.releases[0];
    release.live = vec![
        LiveObject {
            resource: rt("", "v1", "ConfigMap", "configmaps", true),
            object: obj(
                "v1",
                "ConfigMap",
                Some("capture-ns"),
                "capture-config",
                json!({}),
            ),
            chart_crd: false,
        },
        LiveObject {
            resource: rt(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
            ),
            object: obj(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "capture-reader",
                json!({}),
            ),
            chart_crd: false,
        },
    ];
    release.live.extend(extra_live);
    inventory.namespaces = vec![namespace("capture-ns", json!({}))];
    inventory
}

fn phase_names(p: &crate::plan::Plan, id: PhaseId) -> Vec<String> {
    p.phase(id)
        .map(|ph| ph.actions.iter().map(|a| a.target.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn selected_release_objects_then_records_are_planned() {
    let deployment = LiveObject {
        resource: rt("apps", "v1", "Deployment", "deployments", true),
        object: obj(
            "apps/v1",
            "Deployment",
            Some("capture-ns"),
            "worker",
            json!({}),
        ),
        chart_crd: false,
    };
    let kept = LiveObject {
        resource: rt("", "v1", "Secret", "secrets", true),
        object: obj(
            "v1",
            "Secret",
            Some("capture-ns"),
            "keep-me",
            json!({"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}}),
        ),
        chart_crd: false,
    };
    let foreign_crd = LiveObject {
        resource: crate::inventory::types::crd(),
        object: obj(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "gadgets.example.com",
            json!({"spec": {"group": "example.com"}}),
        ),
        chart_crd: true,
    };
    let inventory = inventory_with_release(vec![deployment, kept, foreign_crd.clone()]);
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    assert_eq!(
        phase_names(&p, PhaseId::HelmWorkloads),
        ["deployments.apps/capture-ns/worker"]
    );
    assert_eq!(
        phase_names(&p, PhaseId::HelmReleases),
        [
            "configmaps/capture-ns/capture-config",
            "clusterroles.rbac.authorization.k8s.io/capture-reader"
        ]
    );
    assert_eq!(
        phase_names(&p, PhaseId::HelmRecords),
        [
            "secrets/capture-ns/sh.helm.release.v1.capture.v1",
            "secrets/capture-ns/sh.helm.release.v1.capture.v2"
        ]
    );
    let records = p.phase(PhaseId::HelmRecords).expect("records");
    assert!(records.actions.iter().all(|a| !a.target.uid.is_empty()));
    assert!(matches!(
        records.actions[0].operation,
        Operation::Delete { .. }
    ));
    let findings: Vec<String> = p.findings.iter().map(ToString::to_string).collect();
    assert!(
        findings
            .iter()
            .any(|f| f.contains("keep-me") && f.contains("resource-policy")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.contains("gadgets.example.com")),
        "{findings:?}"
    );
    assert!(p.phase(PhaseId::Crds).expect("crds").actions.is_empty());

    let included = PlanOptions {
        include_shared_crds: true,
        ..PlanOptions::default()
    };
    let p = plan(
        &profile(),
        &inventory_with_release(vec![foreign_crd]),
        &included,
    );
    assert_eq!(
        phase_names(&p, PhaseId::Crds),
        ["customresourcedefinitions.apiextensions.k8s.io/gadgets.example.com"]
    );
}

#[test]
fn unselected_releases_are_untouched_and_member_releases_reported() {
    // Without the extension label, nothing selects the release.
    let mut inventory = inventory_with_release(vec![]);
    for object in &mut inventory.helm.releases[0].objects {
        object.labels.clear();
    }
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    assert!(p.is_empty(), "{:?}", p.phases);

    // An InstallPlan names it (and a member cluster's agent).
    let installplan = obj(
        "kubesphere.io/v1alpha1",
        "InstallPlan",
        None,
        "capture",
        json!({"status": {"releaseName": "capture", "targetNamespace": "capture-ns",
               "clusterSchedulingStatuses": {"member1": {"releaseName": "capture-agent", "targetNamespace": "capture-ns"}}}}),
    );
    inventory.crds = vec![crd(
        rt(
            "kubesphere.io",
            "v1alpha1",
            "InstallPlan",
            "installplans",
            false,
        ),
        vec![installplan],
        json!({}),
    )];
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    assert_eq!(phase_names(&p, PhaseId::HelmRecords).len(), 2);
    assert!(p.findings.iter().any(|f| matches!(f, Finding::Skipped { subject, .. } if subject.contains("member cluster member1"))));
}

#[test]
fn objects_other_phases_handle_are_left_to_them() {
    // The ClusterRole is also platform RBAC by label: one delete, in cluster leftovers.
    let mut inventory = inventory_with_release(vec![]);
    let role = obj(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        None,
        "capture-reader",
        json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "capture"}}}),
    );
    inventory.cluster_roles = vec![role];
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    let all: Vec<String> = p.actions().map(|(_, a)| a.target.to_string()).collect();
    let count = all
        .iter()
        .filter(|t| t.ends_with("/capture-reader"))
        .count();
    assert_eq!(count, 1, "{all:?}");
    assert_eq!(
        phase_names(&p, PhaseId::ClusterLeftovers),
        ["clusterroles.rbac.authorization.k8s.io/capture-reader"]
    );
}

/// A Secret record as Helm writes it, for a release whose manifest is given.
fn synthetic_record(
    name: &str,
    ns: &str,
    version: i64,
    status: &str,
    manifest: &str,
) -> DynamicObject {
    use base64::Engine;
    use std::io::Write;
    let release = json!({
        "name": name, "namespace": ns, "version": version,
        "info": {"status": status},
        "chart": {"metadata": {"name": name, "version": "1.0.0"},
                  "files": [{"name": "crds/widgets.yaml", "data": base64::engine::general_purpose::STANDARD.encode(
                      "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.demo.kubesphere.io}\nspec: {group: demo.kubesphere.io}\n")}]},
        "manifest": manifest,
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(release.to_string().as_bytes()).expect("gzip");
    let engine = base64::engine::general_purpose::STANDARD;
    let helm_value = engine.encode(gz.finish().expect("gzip"));
    obj(
        "v1",
        "Secret",
        Some(ns),
        &format!("sh.helm.release.v1.{name}.v{version}"),
        json!({"type": RELEASE_SECRET_TYPE,
               "metadata": {"labels": {"owner": "helm", "name": name, "version": version.to_string(), "status": status}},
               "data": {"release": engine.encode(helm_value)}}),
    )
}

#[test]
fn keep_extensions_keeps_the_release_and_rewrites_records_naming_removed_kinds() {
    const NS: &str = "extension-demo";
    let doc = |api: &str, kind: &str, name: &str| {
        format!(
            "---\n# Source: demo/templates/{name}.yaml\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  labels: {{kubesphere.io/extension-ref: demo}}\n"
        )
    };
    let v1 = [
        doc("v1", "ConfigMap", "demo-config"),
        doc("extensions.kubesphere.io/v1alpha1", "JSBundle", "demo-ui"),
    ]
    .concat();
    let v2 = [
        v1.clone(),
        doc("rbac.authorization.k8s.io/v1", "ClusterRole", "demo-reader"),
    ]
    .concat();
    let v3 = doc("v1", "ConfigMap", "demo-config"); // already without platform kinds
    let mut inventory = Inventory {
        helm: summarise(vec![
            (
                StorageDriver::Secret,
                synthetic_record("demo", NS, 1, "superseded", &v1),
            ),
            (
                StorageDriver::Secret,
                synthetic_record("demo", NS, 2, "deployed", &v2),
            ),
            // A release in the same namespace that nothing selects.
            (
                StorageDriver::Secret,
                synthetic_record(
                    "other",
                    NS,
                    1,
                    "deployed",
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
                ),
            ),
        ]),
        ..Inventory::default()
    };
    let jsbundle_rt = rt(
        "extensions.kubesphere.io",
        "v1alpha1",
        "JSBundle",
        "jsbundles",
        false,
    );
    let widget_rt = rt("demo.kubesphere.io", "v1alpha1", "Widget", "widgets", true);
    // What the extension's templates render: labelled with its name.
    let labelled = |api: &str, kind: &str, ns: Option<&str>, name: &str| {
        obj(
            api,
            kind,
            ns,
            name,
            json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "demo"}}}),
        )
    };
    let jsbundle = labelled(
        "extensions.kubesphere.io/v1alpha1",
        "JSBundle",
        None,
        "demo-ui",
    );
    let config = labelled("v1", "ConfigMap", Some(NS), "demo-config");
    let role = labelled(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        None,
        "demo-reader",
    );
    let widget = obj(
        "demo.kubesphere.io/v1alpha1",
        "Widget",
        Some(NS),
        "w1",
        json!({}),
    );
    let widgets = crd(widget_rt.clone(), vec![widget], json!({}));
    let demo = inventory
        .helm
        .releases
        .iter_mut()
        .find(|r| r.name == "demo")
        .expect("demo");
    demo.live = vec![
        LiveObject {
            resource: rt("", "v1", "ConfigMap", "configmaps", true),
            object: config.clone(),
            chart_crd: false,
        },
        LiveObject {
            resource: crate::inventory::types::cluster_role(),
            object: role.clone(),
            chart_crd: false,
        },
        LiveObject {
            resource: jsbundle_rt.clone(),
            object: jsbundle.clone(),
            chart_crd: false,
        },
        LiveObject {
            resource: crate::inventory::types::crd(),
            object: widgets.crd.clone(),
            chart_crd: true,
        },
    ];
    let installplan = obj(
        "kubesphere.io/v1alpha1",
        "InstallPlan",
        None,
        "demo",
        json!({"status": {"releaseName": "demo", "targetNamespace": NS}}),
    );
    inventory.crds = vec![
        crd(jsbundle_rt.clone(), vec![jsbundle], json!({})),
        crd(
            rt(
                "kubesphere.io",
                "v1alpha1",
                "InstallPlan",
                "installplans",
                false,
            ),
            vec![installplan],
            json!({}),
        ),
        widgets,
    ];
    inventory.resource_types = vec![jsbundle_rt, widget_rt];
    inventory.cluster_roles = vec![role];
    inventory.namespaces = vec![namespace(
        NS,
        json!({"metadata": {"labels": {"kubesphere.io/managed": "true"}}}),
    )];
    // The InstallPlan only names the namespace: it goes because all it
    // holds is the release's (its live objects and records).
    let mut content = crate::inventory::NamespaceContent {
        namespace: NS.into(),
        ..Default::default()
    };
    for release in inventory.helm.releases.iter().filter(|r| r.name == "demo") {
        let live = release.live.iter().map(|l| (l.resource.clone(), &l.object));
        let records = release
            .records
            .iter()
            .map(|r| (crate::helm::record_type(r), r));
        for (resource, object) in live.chain(records) {
            if object.metadata.namespace.as_deref() == Some(NS) {
                content.objects.push(crate::inventory::ObservedList {
                    resource,
                    objects: vec![object.clone()],
                });
            }
        }
    }
    assert!(!content.objects.is_empty());
    inventory.namespace_contents = vec![content.clone()];
    // Release `other`'s record in the same namespace is not `demo`'s: with
    // it, the namespace is kept (and named why).
    let other = inventory
        .helm
        .releases
        .iter()
        .find(|r| r.name == "other")
        .expect("other");
    let mut with_other = inventory.clone();
    with_other.namespace_contents[0]
        .objects
        .push(crate::inventory::ObservedList {
            resource: crate::helm::record_type(&other.records[0]),
            objects: other.records.clone(),
        });
    let kept_ns = plan(&profile(), &with_other, &PlanOptions::default());
    assert!(!phase_names(&kept_ns, PhaseId::Namespaces).contains(&format!("namespaces/{NS}")));

    // Default: the release, its records, its CRD and its namespace go.
    let removed = plan(&profile(), &inventory, &PlanOptions::default());
    assert_eq!(phase_names(&removed, PhaseId::HelmRecords).len(), 2);
    assert!(
        phase_names(&removed, PhaseId::Namespaces).contains(&format!("namespaces/{NS}")),
        "{:#?}",
        removed.findings
    );
    assert!(
        phase_names(&removed, PhaseId::Crds)
            .iter()
            .any(|c| c.contains("widgets.demo.kubesphere.io"))
    );

    let keep = PlanOptions {
        keep_extensions: true,
        ..PlanOptions::default()
    };
    let kept = plan(&profile(), &inventory, &keep);
    // Every record of `demo` that names the JSBundle is rewritten, nothing is deleted.
    let records = kept.phase(PhaseId::HelmRecords).expect("records");
    let rewrites: Vec<(String, Vec<String>)> = records
        .actions
        .iter()
        .map(|a| match &a.operation {
            Operation::RewriteHelmRecord { remove_kinds } => (
                a.target.name.clone(),
                remove_kinds.iter().map(ToString::to_string).collect(),
            ),
            other => panic!("unexpected {other:?} on {}", a.target),
        })
        .collect();
    let jsb = vec!["JSBundle.extensions.kubesphere.io".to_owned()];
    assert_eq!(
        rewrites,
        vec![
            ("sh.helm.release.v1.demo.v1".to_owned(), jsb.clone()),
            ("sh.helm.release.v1.demo.v2".to_owned(), jsb)
        ]
    );
    // The release's own objects, its CRD (and instances) and namespace are untouched...
    let touched: Vec<String> = kept.actions().map(|(_, a)| a.target.to_string()).collect();
    for spared in [
        "configmaps/extension-demo/demo-config",
        "clusterroles.rbac.authorization.k8s.io/demo-reader",
        "widgets.demo.kubesphere.io/extension-demo/w1",
        "customresourcedefinitions.apiextensions.k8s.io/widgets.demo.kubesphere.io",
    ] {
        assert!(
            !touched.iter().any(|t| t == spared),
            "{spared} in {touched:?}"
        );
    }
    assert!(
        kept.actions()
            .all(|(_, a)| !(a.target.name == NS && a.operation.deletes()))
    );
    // ...while the platform's kinds go: the JSBundle with its CRD, the InstallPlan.
    for gone in [
        "jsbundles.extensions.kubesphere.io/demo-ui",
        "installplans.kubesphere.io/demo",
        "customresourcedefinitions.apiextensions.k8s.io/jsbundles.extensions.kubesphere.io",
    ] {
        assert!(
            touched.iter().any(|t| t == gone),
            "{gone} not in {touched:?}"
        );
    }
    let findings: Vec<String> = kept.findings.iter().map(ToString::to_string).collect();
    assert!(
        findings
            .iter()
            .any(|f| f.contains("helm release extension-demo/demo")
                && f.contains("--keep-extensions")),
        "{findings:?}"
    );

    // After the apply: records rewritten, CRD gone: nothing left to do for the release.
    let mut after = inventory.clone();
    after.crds.retain(|c| {
        c.name() != "jsbundles.extensions.kubesphere.io" && c.name() != "installplans.kubesphere.io"
    });
    after.resource_types.retain(|r| r.kind != "JSBundle");
    after.cluster_roles.clear();
    after.helm = summarise(vec![
        (
            StorageDriver::Secret,
            synthetic_record(
                "demo",
                NS,
                1,
                "superseded",
                &doc("v1", "ConfigMap", "demo-config"),
            ),
        ),
        (
            StorageDriver::Secret,
            synthetic_record("demo", NS, 2, "deployed", &v3),
        ),
    ]);
    let again = plan(&profile(), &after, &keep);
    assert!(
        phase_names(&again, PhaseId::HelmRecords).is_empty(),
        "{:?}",
        again.phases
    );
    // A record still naming the now-unserved platform kind is rewritten (an interrupted run).
    after.helm = summarise(vec![(
        StorageDriver::Secret,
        synthetic_record("demo", NS, 2, "deployed", &v1),
    )]);
    let resumed = plan(&profile(), &after, &keep);
    assert_eq!(
        phase_names(&resumed, PhaseId::HelmRecords),
        ["secrets/extension-demo/sh.helm.release.v1.demo.v2"]
    );
}

#[test]
fn release_objects_in_a_kept_namespace_are_deleted_not_only_stripped() {
    // capture-ns is not the platform's, so it is kept; the release's
    // ConfigMap there carries a platform label, so it is also a kept object.
    let mut inventory = inventory_with_release(vec![]);
    inventory.kept_objects = vec![crate::inventory::ObservedList {
        resource: rt("", "v1", "ConfigMap", "configmaps", true),
        objects: vec![obj(
            "v1",
            "ConfigMap",
            Some("capture-ns"),
            "capture-config",
            json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "capture"}}}),
        )],
    }];
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    let on_config: Vec<(PhaseId, &Operation)> = p
        .actions()
        .filter(|(_, a)| a.target.name == "capture-config")
        .map(|(id, a)| (id, &a.operation))
        .collect();
    assert!(
        matches!(on_config.as_slice(), [(PhaseId::HelmReleases, op)] if op.deletes()),
        "{on_config:?}"
    );
}
