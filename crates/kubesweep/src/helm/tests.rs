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
/// helm v4.3.2 `install` then `upgrade` of a small chart (Secret driver),
/// read back through `kubesweep backup`: Helm 4's shape (`apply_method`).
const HELM4_RECORDS: &str = include_str!("../../tests/data/helm/capture-helm4-secret-driver.json");
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
fn real_helm_4_records_decode_and_the_latest_revision_is_used() {
    let observed = summarise(records(HELM4_RECORDS, StorageDriver::Secret));
    assert!(observed.unreadable.is_empty(), "{:?}", observed.unreadable);
    let [release] = observed.releases.as_slice() else {
        panic!("one release: {:?}", observed.releases);
    };
    assert!(release.unknown_records.is_empty());
    assert_eq!((release.revision, release.status.as_str()), (2, "deployed"));
    assert_eq!(release.records.len(), 2);
    let objects: Vec<String> = release.objects.iter().map(|o| o.describe()).collect();
    assert_eq!(objects, ["ConfigMap capture4-config"]);
    assert_eq!(release.chart_crds[0].name, "captures.capture4.example.org");
    let inventory = Inventory {
        helm: observed.clone(),
        ..Inventory::default()
    };
    assert_eq!(
        select_releases(&profile(), &inventory).selected.len(),
        1,
        "selected by its label naming it"
    );
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

/// Metadata of an object Helm installed for release `name` in `ns`: Helm's
/// ownership annotations, as helm 3.2+ writes them on every object.
fn helm_owned(name: &str, ns: &str) -> Value {
    json!({"metadata": {"annotations": {
        RELEASE_NAME_ANNOTATION: name, RELEASE_NAMESPACE_ANNOTATION: ns}}})
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
                helm_owned("capture", "capture-ns"),
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
                helm_owned("capture", "capture-ns"),
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
            helm_owned("capture", "capture-ns"),
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
            json!({"metadata": {"annotations": {"helm.sh/resource-policy": "keep",
                RELEASE_NAME_ANNOTATION: "capture", RELEASE_NAMESPACE_ANNOTATION: "capture-ns"}}}),
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
    // Included, and discovery listed its instances: none, so it goes.
    let mut listed = inventory_with_release(vec![foreign_crd]);
    listed.crds.push(crd(
        rt("example.com", "v1alpha1", "Gadget", "gadgets", true),
        vec![],
        json!({}),
    ));
    let p = plan(&profile(), &listed, &included);
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

/// A Secret record as Helm writes it, for a release whose manifest is given
/// and whose chart ships `widgets.demo.kubesphere.io` in `crds/`.
fn synthetic_record(
    name: &str,
    ns: &str,
    version: i64,
    status: &str,
    manifest: &str,
) -> DynamicObject {
    synthetic_record_with_crds(
        name,
        ns,
        version,
        status,
        manifest,
        &["widgets.demo.kubesphere.io"],
    )
}

/// [`synthetic_record`] with the chart's `crds/` holding `crds` (`plural.group`).
fn synthetic_record_with_crds(
    name: &str,
    ns: &str,
    version: i64,
    status: &str,
    manifest: &str,
    crds: &[&str],
) -> DynamicObject {
    use base64::Engine;
    use std::io::Write;
    let files: Vec<Value> = crds
        .iter()
        .map(|crd| {
            let group = crd.split_once('.').map(|(_, g)| g).unwrap_or_default();
            let text = format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {crd}}}\nspec: {{group: {group}}}\n"
            );
            json!({"name": format!("crds/{crd}.yaml"),
                   "data": base64::engine::general_purpose::STANDARD.encode(text)})
        })
        .collect();
    let release = json!({
        "name": name, "namespace": ns, "version": version,
        "info": {"status": status},
        "chart": {"metadata": {"name": name, "version": "1.0.0"}, "files": files},
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

// Ownership under ambiguity (issue 9, items 5, 6, 8, 9): a record names
// objects, it does not prove they are still the release's.

const DEMO_NS: &str = "extension-demo";
const USER_NS: &str = "user-project";

fn config_map_rt() -> crate::resource::ResourceType {
    rt("", "v1", "ConfigMap", "configmaps", true)
}

fn live(resource: crate::resource::ResourceType, object: DynamicObject) -> LiveObject {
    LiveObject {
        resource,
        object,
        chart_crd: false,
    }
}

fn manifest_doc(api: &str, kind: &str, ns: Option<&str>, name: &str) -> String {
    let ns = ns
        .map(|n| format!("\n  namespace: {n}"))
        .unwrap_or_default();
    format!("---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}{ns}\n")
}

/// Release `demo` (records given), named by an InstallPlan, whose live
/// objects are `live`; a user project `user-project` beside it.
fn demo_inventory(records: Vec<DynamicObject>, live: Vec<LiveObject>) -> Inventory {
    let installplan = obj(
        "kubesphere.io/v1alpha1",
        "InstallPlan",
        None,
        "demo",
        json!({"status": {"releaseName": "demo", "targetNamespace": DEMO_NS}}),
    );
    let mut inventory = Inventory {
        helm: summarise(
            records
                .into_iter()
                .map(|r| (StorageDriver::Secret, r))
                .collect(),
        ),
        crds: vec![crd(
            rt(
                "kubesphere.io",
                "v1alpha1",
                "InstallPlan",
                "installplans",
                false,
            ),
            vec![installplan],
            json!({}),
        )],
        namespaces: vec![
            // Proven the platform's by the profile's rule (prefix and label).
            namespace(
                DEMO_NS,
                json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "demo"}}}),
            ),
            namespace(
                USER_NS,
                json!({"metadata": {"labels": {"kubesphere.io/workspace": "ws"}}}),
            ),
        ],
        ..Inventory::default()
    };
    if let Some(demo) = inventory
        .helm
        .releases
        .iter_mut()
        .find(|r| r.name == "demo")
    {
        demo.live = live;
    }
    inventory
}

fn deleted(p: &crate::plan::Plan) -> Vec<String> {
    p.actions()
        .filter(|(_, a)| a.operation.deletes())
        .map(|(_, a)| a.target.to_string())
        .collect()
}

fn findings(p: &crate::plan::Plan) -> Vec<String> {
    p.findings.iter().map(ToString::to_string).collect()
}

#[test]
fn release_claim_needs_both_annotations_naming_the_release() {
    let meta = |annotations: Value| {
        obj(
            "v1",
            "ConfigMap",
            Some("ns"),
            "c",
            json!({"metadata": {"annotations": annotations}}),
        )
        .metadata
    };
    let key = ReleaseKey {
        namespace: "ns".into(),
        name: "r".into(),
    };
    let other = |ns: &str, name: &str| {
        ReleaseClaim::Other(ReleaseKey {
            namespace: ns.into(),
            name: name.into(),
        })
    };
    let cases = [
        (
            json!({RELEASE_NAME_ANNOTATION: "r", RELEASE_NAMESPACE_ANNOTATION: "ns"}),
            ReleaseClaim::Ours,
        ),
        (
            json!({RELEASE_NAME_ANNOTATION: "x", RELEASE_NAMESPACE_ANNOTATION: "ns"}),
            other("ns", "x"),
        ),
        (
            json!({RELEASE_NAME_ANNOTATION: "r", RELEASE_NAMESPACE_ANNOTATION: "other"}),
            other("other", "r"),
        ),
        (json!({RELEASE_NAME_ANNOTATION: "x"}), other("?", "x")),
        (
            json!({RELEASE_NAME_ANNOTATION: "r"}),
            ReleaseClaim::Unclaimed,
        ),
        (json!({"team": "a"}), ReleaseClaim::Unclaimed),
    ];
    for (annotations, expected) in cases {
        assert_eq!(
            release_claim(&meta(annotations.clone()), &key),
            expected,
            "{annotations}"
        );
    }
}

#[test]
fn objects_another_release_took_over_or_nothing_proves_are_skipped_and_reported() {
    let manifest = [
        manifest_doc(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "demo-reader",
        ),
        manifest_doc(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "taken-reader",
        ),
        manifest_doc("v1", "ConfigMap", Some(USER_NS), "plain-config"),
        manifest_doc("v1", "ConfigMap", Some(USER_NS), "labelled-config"),
    ]
    .concat();
    let role = |name: &str, extra: Value| {
        obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            name,
            extra,
        )
    };
    // Taken over by release apps/other with --take-ownership: the claim
    // changed, the extension label the old chart set is still there.
    let taken = role(
        "taken-reader",
        json!({"metadata": {
            "labels": {"kubesphere.io/extension-ref": "demo"},
            "annotations": {RELEASE_NAME_ANNOTATION: "other", RELEASE_NAMESPACE_ANNOTATION: "apps"}}}),
    );
    let objects = vec![
        live(
            crate::inventory::types::cluster_role(),
            role("demo-reader", helm_owned("demo", DEMO_NS)),
        ),
        live(crate::inventory::types::cluster_role(), taken.clone()),
        live(
            config_map_rt(),
            obj("v1", "ConfigMap", Some(USER_NS), "plain-config", json!({})),
        ),
        live(
            config_map_rt(),
            obj(
                "v1",
                "ConfigMap",
                Some(USER_NS),
                "labelled-config",
                json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "demo"}}}),
            ),
        ),
    ];
    let other_release = synthetic_record(
        "other",
        "apps",
        1,
        "deployed",
        &manifest_doc(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "taken-reader",
        ),
    );
    let mut inventory = demo_inventory(
        vec![
            synthetic_record("demo", DEMO_NS, 1, "deployed", &manifest),
            other_release,
        ],
        objects,
    );
    // The platform's RBAC rule (the label) would match it too.
    inventory.cluster_roles = vec![taken];
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    let gone = deleted(&p);
    for expected in [
        "clusterroles.rbac.authorization.k8s.io/demo-reader",
        "configmaps/user-project/labelled-config",
    ] {
        assert!(
            gone.iter().any(|t| t == expected),
            "{expected} not in {gone:?}"
        );
    }
    for kept in ["taken-reader", "plain-config"] {
        assert!(
            !gone.iter().any(|t| t.ends_with(kept)),
            "{kept} in {gone:?}"
        );
    }
    let notes = findings(&p);
    assert!(
        notes
            .iter()
            .any(|f| f.contains("taken-reader") && f.contains("helm release apps/other")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|f| f.contains("plain-config") && f.contains("no Helm ownership annotations")),
        "{notes:?}"
    );

    // Once release apps/other is gone, its claim decides nothing: the
    // profile's label proof stands (a leftover of an uninstalled release).
    inventory.helm.releases.retain(|r| r.name != "other");
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    assert!(
        deleted(&p)
            .iter()
            .any(|t| t == "clusterroles.rbac.authorization.k8s.io/taken-reader"),
        "{:?}",
        p.phases
    );
}

#[test]
fn the_latest_revision_is_acted_on_even_when_it_failed() {
    let v1 = manifest_doc("v1", "ConfigMap", None, "a");
    let v2 = [v1.clone(), manifest_doc("v1", "ConfigMap", None, "b")].concat();
    let v3 = [v2.clone(), manifest_doc("v1", "ConfigMap", None, "c")].concat();
    let observed = summarise(vec![
        (
            StorageDriver::Secret,
            synthetic_record("demo", DEMO_NS, 1, "superseded", &v1),
        ),
        (
            StorageDriver::Secret,
            synthetic_record("demo", DEMO_NS, 2, "deployed", &v2),
        ),
        (
            StorageDriver::Secret,
            synthetic_record("demo", DEMO_NS, 3, "failed", &v3),
        ),
    ]);
    let release = &observed.releases[0];
    assert_eq!((release.revision, release.status.as_str()), (3, "failed"));
    let names: Vec<&str> = release.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(release.records.len(), 3);
}

#[test]
fn an_uninstalled_record_deletes_only_records_and_a_superseded_one_only_annotated_objects() {
    let manifest = [
        manifest_doc("v1", "ConfigMap", Some(USER_NS), "app-config"),
        manifest_doc("v1", "ConfigMap", Some(USER_NS), "still-ours"),
    ]
    .concat();
    let objects = || {
        vec![
            // Created by the user since, under a name the history lists.
            live(
                config_map_rt(),
                obj(
                    "v1",
                    "ConfigMap",
                    Some(USER_NS),
                    "app-config",
                    json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "demo"}}}),
                ),
            ),
            live(
                config_map_rt(),
                obj(
                    "v1",
                    "ConfigMap",
                    Some(USER_NS),
                    "still-ours",
                    helm_owned("demo", DEMO_NS),
                ),
            ),
        ]
    };
    let uninstalled = demo_inventory(
        vec![
            synthetic_record("demo", DEMO_NS, 1, "superseded", &manifest),
            synthetic_record("demo", DEMO_NS, 2, "uninstalled", &manifest),
        ],
        objects(),
    );
    let p = plan(&profile(), &uninstalled, &PlanOptions::default());
    assert_eq!(
        phase_names(&p, PhaseId::HelmRecords),
        [
            "secrets/extension-demo/sh.helm.release.v1.demo.v1",
            "secrets/extension-demo/sh.helm.release.v1.demo.v2"
        ]
    );
    assert!(
        !deleted(&p)
            .iter()
            .any(|t| t.starts_with("configmaps/user-project")),
        "{:?}",
        deleted(&p)
    );
    let notes = findings(&p);
    assert!(
        notes
            .iter()
            .any(|f| f.contains("2 object(s)") && f.contains("uninstalled")),
        "{notes:?}"
    );

    // The latest record left is `superseded`: only what is annotated as the
    // release's goes, a label is not enough.
    let superseded = demo_inventory(
        vec![synthetic_record(
            "demo",
            DEMO_NS,
            1,
            "superseded",
            &manifest,
        )],
        objects(),
    );
    let p = plan(&profile(), &superseded, &PlanOptions::default());
    let gone = deleted(&p);
    assert!(
        gone.contains(&"configmaps/user-project/still-ours".to_owned()),
        "{gone:?}"
    );
    assert!(
        !gone.contains(&"configmaps/user-project/app-config".to_owned()),
        "{gone:?}"
    );
}

#[test]
fn the_label_rule_selects_a_release_only_when_the_label_names_it() {
    let labelled = |name: &str, value: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{kubesphere.io/extension-ref: {value}}}\n"
        )
    };
    let unlabelled = manifest_doc("apps/v1", "Deployment", None, "web");
    let inventory = Inventory {
        helm: summarise(
            [
                // A user's chart that shows one ConfigMap in the console.
                synthetic_record(
                    "shop",
                    "apps",
                    1,
                    "deployed",
                    &[labelled("console-entry", "demo"), unlabelled.clone()].concat(),
                ),
                synthetic_record("demo", DEMO_NS, 1, "deployed", &labelled("cfg", "demo")),
                synthetic_record(
                    "demo-agent",
                    DEMO_NS,
                    1,
                    "deployed",
                    &labelled("cfg", "demo"),
                ),
            ]
            .into_iter()
            .map(|r| (StorageDriver::Secret, r))
            .collect(),
        ),
        ..Inventory::default()
    };
    let selection = select_releases(&profile(), &inventory);
    let selected: Vec<String> = selection.selected.keys().map(ToString::to_string).collect();
    assert_eq!(
        selected,
        ["extension-demo/demo", "extension-demo/demo-agent"]
    );
}

/// `demo`'s chart brings `gateways.gateway.networking.k8s.io` (outside the
/// platform's groups); the CRD as discovery listed it, with `instances`.
fn gateway_inventory(instances: Vec<DynamicObject>, listed: bool) -> Inventory {
    let gateway_rt = rt(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        true,
    );
    let mut gateways = crd(gateway_rt, instances, json!({}));
    gateways.instances_listed = listed;
    let mut inventory = demo_inventory(
        vec![synthetic_record_with_crds(
            "demo",
            DEMO_NS,
            1,
            "deployed",
            "",
            &["gateways.gateway.networking.k8s.io"],
        )],
        vec![LiveObject {
            resource: crate::inventory::types::crd(),
            object: gateways.crd.clone(),
            chart_crd: true,
        }],
    );
    inventory.crds.push(gateways);
    inventory
}

#[test]
fn included_chart_crds_outside_the_platform_go_only_without_foreign_instances() {
    const CRD: &str =
        "customresourcedefinitions.apiextensions.k8s.io/gateways.gateway.networking.k8s.io";
    let include = PlanOptions {
        include_shared_crds: true,
        ..PlanOptions::default()
    };
    let gateway = |ns: &str, name: &str, extra: Value| {
        obj(
            "gateway.networking.k8s.io/v1",
            "Gateway",
            Some(ns),
            name,
            extra,
        )
    };
    // A user's Gateway in their own project: the CRD stays.
    let users = gateway_inventory(vec![gateway(USER_NS, "public", json!({}))], true);
    let p = plan(&profile(), &users, &include);
    assert!(!deleted(&p).contains(&CRD.to_owned()), "{:?}", deleted(&p));
    assert!(
        p.findings.iter().any(|f| matches!(f, Finding::SharedCrdKept { crd, foreign_instances, .. }
            if crd == "gateways.gateway.networking.k8s.io" && foreign_instances == &["user-project/public"])),
        "{:?}",
        findings(&p)
    );
    // Instances that could not be listed: foreign use cannot be ruled out.
    let p = plan(&profile(), &gateway_inventory(vec![], false), &include);
    assert!(!deleted(&p).contains(&CRD.to_owned()));
    // Never listed at all: kept too.
    let mut unlisted = gateway_inventory(vec![], true);
    unlisted
        .crds
        .retain(|c| c.group() != "gateway.networking.k8s.io");
    assert!(!deleted(&plan(&profile(), &unlisted, &include)).contains(&CRD.to_owned()));
    // Only the release's own Gateways (annotated, or in its namespace): it goes.
    let own = gateway_inventory(
        vec![
            gateway(USER_NS, "demo-gw", helm_owned("demo", DEMO_NS)),
            gateway(DEMO_NS, "internal", json!({})),
        ],
        true,
    );
    let p = plan(&profile(), &own, &include);
    assert!(deleted(&p).contains(&CRD.to_owned()), "{:?}", findings(&p));
    // And without --include-shared-crds, never.
    let p = plan(&profile(), &own, &PlanOptions::default());
    assert!(!deleted(&p).contains(&CRD.to_owned()));
}

#[test]
fn keep_extensions_keeps_every_crd_not_proven_the_platforms_own() {
    let ks_core = synthetic_record_with_crds(
        "ks-core",
        "kubesphere-system",
        1,
        "deployed",
        "",
        &["extras.kubesphere.io"],
    );
    let mut inventory = demo_inventory(
        vec![
            synthetic_record("demo", DEMO_NS, 1, "deployed", ""),
            ks_core,
        ],
        vec![],
    );
    let platform_crd = |group: &str, kind: &str, plural: &str| {
        crd(
            rt(group, "v1alpha1", kind, plural, false),
            vec![],
            json!({}),
        )
    };
    inventory.crds.extend([
        // In ks-core's record (chart crds/).
        platform_crd("kubesphere.io", "Extra", "extras"),
        // In the demo extension's record: kept already before.
        platform_crd("demo.kubesphere.io", "Widget", "widgets"),
        // A subchart's crds/ or created at run time: in no record.
        platform_crd("demo.kubesphere.io", "Gizmo", "gizmos"),
    ]);
    let crd_deleted = |p: &crate::plan::Plan, name: &str| {
        deleted(p).contains(&format!(
            "customresourcedefinitions.apiextensions.k8s.io/{name}"
        ))
    };
    let keep = PlanOptions {
        keep_extensions: true,
        ..PlanOptions::default()
    };
    let p = plan(&profile(), &inventory, &keep);
    // ks-core's own (its record, the profile's list of what it ships) go...
    assert!(crd_deleted(&p, "extras.kubesphere.io"));
    assert!(crd_deleted(&p, "installplans.kubesphere.io"));
    // ...the extension's stay, whether its record names them or not.
    assert!(!crd_deleted(&p, "widgets.demo.kubesphere.io"));
    assert!(!crd_deleted(&p, "gizmos.demo.kubesphere.io"));
    assert!(
        findings(&p)
            .iter()
            .any(|f| f.contains("gizmos.demo.kubesphere.io") && f.contains("not proven")),
        "{:?}",
        findings(&p)
    );
    // Without the option, every platform CRD goes.
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    assert!(crd_deleted(&p, "gizmos.demo.kubesphere.io"));
    assert!(crd_deleted(&p, "widgets.demo.kubesphere.io"));
}

#[test]
fn a_release_with_records_of_an_unknown_format_is_reported_and_never_touched() {
    let manifest = manifest_doc("v1", "ConfigMap", Some(USER_NS), "still-ours");
    let mut newer = synthetic_record("demo", DEMO_NS, 2, "deployed", &manifest);
    newer.data["type"] = json!("helm.sh/release.v2");
    let mut renamed = synthetic_record("demo", DEMO_NS, 3, "deployed", &manifest);
    renamed.metadata.name = Some("sh.helm.release.v2.demo.v3".into());
    renamed.data["type"] = json!("helm.sh/release.v2");
    let mut inventory = demo_inventory(
        vec![
            synthetic_record("demo", DEMO_NS, 1, "superseded", &manifest),
            newer,
            renamed,
        ],
        vec![live(
            config_map_rt(),
            obj(
                "v1",
                "ConfigMap",
                Some(USER_NS),
                "still-ours",
                helm_owned("demo", DEMO_NS),
            ),
        )],
    );
    let release = &inventory.helm.releases[0];
    assert_eq!(
        release.unknown_records,
        [
            "sh.helm.release.v1.demo.v2 (type helm.sh/release.v2)",
            "sh.helm.release.v2.demo.v3 (type helm.sh/release.v2)"
        ]
    );
    assert_eq!(release.records.len(), 1, "only the v1 record is read");
    // It carries the extension label, so it is also a kept object that
    // would lose it: not this release's objects.
    inventory.kept_objects = vec![crate::inventory::ObservedList {
        resource: config_map_rt(),
        objects: vec![obj(
            "v1",
            "ConfigMap",
            Some(USER_NS),
            "still-ours",
            json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "demo"}}}),
        )],
    }];
    for options in [
        PlanOptions::default(),
        PlanOptions {
            keep_extensions: true,
            ..PlanOptions::default()
        },
    ] {
        let p = plan(&profile(), &inventory, &options);
        let touched: Vec<String> = p
            .actions()
            .filter(|(_, a)| {
                let strip = matches!(a.operation, Operation::StripMetadata { .. });
                a.target.namespace.as_deref() == Some(DEMO_NS)
                    // Kept, the namespace loses only the platform's keys.
                    || (a.target.name == DEMO_NS && !strip)
                    || a.target.name == "still-ours"
            })
            .map(|(_, a)| a.target.to_string())
            .collect();
        assert!(touched.is_empty(), "{touched:?}");
        assert!(
            findings(&p)
                .iter()
                .any(|f| f.contains("helm release extension-demo/demo")
                    && f.contains("format kubesweep does not read")),
            "{:?}",
            findings(&p)
        );
    }
}

#[test]
fn hook_mode_leaves_the_records_of_the_release_helm_is_uninstalling() {
    let mut inventory = inventory_with_release(Vec::new());
    inventory.helm.releases[0].status = "uninstalling".into();
    let hook = PlanOptions {
        leave_uninstalling_records: true,
        ..PlanOptions::default()
    };
    let p = plan(&profile(), &inventory, &hook);
    // Helm purges them after its post-delete hooks; its objects still go.
    assert!(phase_names(&p, PhaseId::HelmRecords).is_empty());
    assert!(!phase_names(&p, PhaseId::HelmReleases).is_empty());
    let left: Vec<&crate::plan::Finding> = p
        .findings
        .iter()
        .filter(|f| matches!(f, crate::plan::Finding::LeftForHelm { .. }))
        .collect();
    assert_eq!(
        left,
        [&crate::plan::Finding::LeftForHelm {
            release: "capture-ns/capture".into(),
            namespace: "capture-ns".into(),
            resource: "secrets".into(),
            records: vec![
                "sh.helm.release.v1.capture.v1".into(),
                "sh.helm.release.v1.capture.v2".into()
            ],
        }]
    );
    // Their namespace is never finalized over them.
    assert!(
        !phase_names(&p, PhaseId::NamespaceFinalize)
            .iter()
            .any(|n| n.ends_with("/capture-ns"))
    );
    // Outside hook mode, and for a release in any other state, they go.
    let p = plan(&profile(), &inventory, &PlanOptions::default());
    assert_eq!(phase_names(&p, PhaseId::HelmRecords).len(), 2);
    inventory.helm.releases[0].status = "deployed".into();
    let p = plan(&profile(), &inventory, &hook);
    assert_eq!(phase_names(&p, PhaseId::HelmRecords).len(), 2);
}

#[test]
fn a_member_agent_release_is_proven_by_the_extension_label_never_by_its_name() {
    let profile = profile();
    let rules = &profile.helm;
    let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let ext = labels(&[("kubesphere.io/extension-ref", "whizard-monitoring")]);
    // `<ext>-agent` with the label naming `<ext>`: the platform's, no InstallPlan needed.
    assert_eq!(
        select::label_naming_release(rules, &ext, "whizard-monitoring-agent"),
        Some("kubesphere.io/extension-ref")
    );
    // The same name without the label, or with a label naming another extension: not proven.
    for other in [
        labels(&[]),
        labels(&[("app.kubernetes.io/managed-by", "Helm")]),
        labels(&[("kubesphere.io/extension-ref", "logging")]),
        labels(&[("kubesphere.io/managed", "true")]),
    ] {
        assert_eq!(
            select::label_naming_release(rules, &other, "whizard-monitoring-agent"),
            None,
            "{other:?}"
        );
    }
    // A suffix the profile does not declare proves nothing either.
    assert_eq!(
        select::label_naming_release(rules, &ext, "whizard-monitoring-proxy"),
        None
    );
}

#[test]
fn ks_core_and_a_release_named_ks_agent_are_the_platform_s_own() {
    let profile = profile();
    let own: Vec<String> = profile
        .helm
        .releases
        .iter()
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect();
    assert!(own.contains(&"kubesphere-system/ks-core".to_owned()));
    assert!(own.contains(&"kubesphere-system/ks-agent".to_owned()));
    assert!(
        profile
            .controllers
            .iter()
            .any(|c| c.namespace == "kubesphere-system" && c.name == "ks-agent")
    );
}
