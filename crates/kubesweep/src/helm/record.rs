//! Helm 3 release records: how they are stored and how to decode them.
//!
//! Helm keeps one record per revision, as a Secret `sh.helm.release.v1.<name>.v<N>`
//! (type `helm.sh/release.v1`, the default driver) or as a ConfigMap of the
//! same name (the `configmap` driver); both carry labels `owner=helm`,
//! `name`, `status` and `version`. The value of key `release` is
//! base64(gzip(JSON)) (uncompressed JSON from very old Helm versions is read
//! too). A Secret's data is base64-encoded once more by the API itself.
//!
//! Decoding never panics: anything malformed is a [`HelmError`] that the
//! caller reports as a finding.

use std::io::Read;

use base64::Engine;
use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Secret type Helm 3 writes.
pub const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";

/// gzip's magic bytes: Helm compresses only when they are present on read.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Largest decompressed release accepted. Real records are a few MiB at most
/// (the API limits a Secret to 1 MiB compressed); the cap keeps a hostile or
/// corrupted record from exhausting memory (a gzip bomb).
const MAX_RELEASE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a stored release record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The object has no `release` key in its data.
    #[error("record has no `release` data")]
    MissingRelease,
    /// A base64 layer is not valid base64.
    #[error("release data is not valid base64 ({layer})")]
    Base64 {
        /// Which layer: the API's (Secret data) or Helm's own.
        layer: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// The gzip stream is corrupt or truncated.
    #[error("release data is not a valid gzip stream")]
    Gzip(#[source] std::io::Error),
    /// The decompressed release is larger than the cap.
    #[error("decompressed release exceeds {MAX_RELEASE_BYTES} bytes")]
    TooLarge,
    /// The JSON does not parse as a Helm release.
    #[error("release is not valid Helm release JSON")]
    Json(#[source] serde_json::Error),
    /// The object is neither a Secret nor a ConfigMap.
    #[error("a release record is a Secret or a ConfigMap, not a {0}")]
    UnknownStorage(String),
}

/// Which storage driver holds a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDriver {
    /// `sh.helm.release.v1.*` Secrets (Helm's default).
    Secret,
    /// `sh.helm.release.v1.*` ConfigMaps (`HELM_DRIVER=configmap`).
    ConfigMap,
}

/// What kubesweep reads from a decoded release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Release name.
    pub name: String,
    /// Namespace the release was installed into.
    pub namespace: String,
    /// Revision.
    pub version: i64,
    /// `info.status`: `deployed`, `superseded`, `failed`, `uninstalling`...
    pub status: String,
    /// `chart.metadata.name`.
    pub chart_name: String,
    /// `chart.metadata.version`.
    pub chart_version: String,
    /// The rendered objects (hooks excluded), multi-document YAML.
    pub manifest: String,
    /// The chart's files under `crds/` (name, content), which Helm installs
    /// before the templates and never deletes.
    pub crd_files: Vec<(String, String)>,
}

/// The subset of Helm's release JSON read here; unknown fields are ignored so
/// newer Helm versions still decode.
#[derive(Deserialize)]
struct RawRelease {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    info: Option<RawInfo>,
    #[serde(default)]
    chart: Option<RawChart>,
    #[serde(default)]
    manifest: String,
}

#[derive(Deserialize)]
struct RawInfo {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct RawChart {
    #[serde(default)]
    metadata: Option<RawMetadata>,
    #[serde(default)]
    files: Option<Vec<RawFile>>,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

/// A chart file: Go's `[]byte` marshals as base64 text.
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    data: Option<String>,
}

/// The release JSON from Helm's own encoding of a release (the value of key
/// `release` once any API-level base64 is removed): base64, then gzip when
/// the magic bytes say so (capped, see [`MAX_RELEASE_BYTES`]).
pub fn decode_release_bytes(value: &[u8]) -> Result<Vec<u8>, HelmError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim_ascii())
        .map_err(|source| HelmError::Base64 {
            layer: "helm",
            source,
        })?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(MAX_RELEASE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(HelmError::Gzip)?;
    if out.len() as u64 > MAX_RELEASE_BYTES {
        return Err(HelmError::TooLarge);
    }
    Ok(out)
}

/// Decodes Helm's own encoding of a release (the value of key `release` once
/// any API-level base64 is removed): base64, then gzip when the magic bytes
/// say so, then JSON.
pub fn decode_release(value: &[u8]) -> Result<ReleaseRecord, HelmError> {
    let json = decode_release_bytes(value)?;
    let raw: RawRelease = serde_json::from_slice(&json).map_err(HelmError::Json)?;
    let (chart_name, chart_version, files) = match raw.chart {
        Some(chart) => {
            let (name, version) = chart
                .metadata
                .map(|m| (m.name, m.version))
                .unwrap_or_default();
            (name, version, chart.files.unwrap_or_default())
        }
        None => Default::default(),
    };
    let crd_files = files
        .into_iter()
        .filter(|f| f.name.starts_with("crds/"))
        .map(|f| {
            // A file that is not valid base64 or UTF-8 cannot be a CRD
            // manifest; keep its name so the caller can report it.
            let text = f
                .data
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            (f.name, text)
        })
        .collect();
    Ok(ReleaseRecord {
        name: raw.name,
        namespace: raw.namespace,
        version: raw.version,
        status: raw.info.map(|i| i.status).unwrap_or_default(),
        chart_name,
        chart_version,
        manifest: raw.manifest,
        crd_files,
    })
}

/// Decodes a record as the API returns it (a Secret or ConfigMap read as a
/// dynamic object): strips the API's base64 layer of Secret data first.
pub fn decode_stored_record(object: &DynamicObject) -> Result<ReleaseRecord, HelmError> {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.as_str())
        .unwrap_or_default();
    let value = object
        .data
        .pointer("/data/release")
        .and_then(Value::as_str)
        .ok_or(HelmError::MissingRelease)?;
    match kind {
        "Secret" => {
            let inner = base64::engine::general_purpose::STANDARD
                .decode(value.trim_ascii())
                .map_err(|source| HelmError::Base64 {
                    layer: "Secret data",
                    source,
                })?;
            decode_release(&inner)
        }
        "ConfigMap" => decode_release(value.as_bytes()),
        other => Err(HelmError::UnknownStorage(other.to_owned())),
    }
}

/// Release name and revision from a record's labels (`name`, `version`),
/// which Helm writes on every record; `None` when they are missing, so a
/// record that does not decode can still be attributed to its release.
pub fn record_identity(object: &DynamicObject) -> Option<(String, i64)> {
    let labels = object.metadata.labels.as_ref()?;
    let name = labels.get("name")?.clone();
    let version = labels.get("version")?.parse().ok()?;
    Some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encode(json: &[u8]) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).expect("gzip");
        let compressed = gz.finish().expect("gzip");
        base64::engine::general_purpose::STANDARD.encode(compressed)
    }

    fn secret(value: &str) -> DynamicObject {
        let api_value = base64::engine::general_purpose::STANDARD.encode(value);
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "sh.helm.release.v1.r.v1", "namespace": "ns",
                         "labels": {"owner": "helm", "name": "r", "version": "1"}},
            "type": RELEASE_SECRET_TYPE,
            "data": {"release": api_value},
        }))
        .expect("secret")
    }

    const RELEASE: &str = r#"{"name":"r","namespace":"ns","version":3,
        "info":{"status":"deployed"},
        "chart":{"metadata":{"name":"c","version":"1.0.0"},
                 "files":[{"name":"crds/a.yaml","data":"a2luZDogQ3VzdG9tUmVzb3VyY2VEZWZpbml0aW9u"},
                          {"name":"README.md","data":""}]},
        "manifest":"---\nkind: ConfigMap\n"}"#;

    #[test]
    fn decodes_gzip_json_with_crd_files() {
        let record = decode_release(encode(RELEASE.as_bytes()).as_bytes()).expect("decode");
        assert_eq!(record.name, "r");
        assert_eq!(record.version, 3);
        assert_eq!(record.status, "deployed");
        assert_eq!(record.chart_name, "c");
        assert_eq!(
            record.crd_files,
            vec![(
                "crds/a.yaml".to_owned(),
                "kind: CustomResourceDefinition".to_owned()
            )]
        );
    }

    #[test]
    fn decodes_uncompressed_json_like_old_helm() {
        let value = base64::engine::general_purpose::STANDARD.encode(RELEASE);
        assert_eq!(decode_release(value.as_bytes()).expect("decode").version, 3);
    }

    #[test]
    fn secret_record_has_two_base64_layers() {
        let record = decode_stored_record(&secret(&encode(RELEASE.as_bytes()))).expect("decode");
        assert_eq!(record.namespace, "ns");
        assert_eq!(record_identity(&secret("")), Some(("r".to_owned(), 1)));
    }

    #[test]
    fn corrupted_records_are_errors_with_messages() {
        let cases: Vec<(DynamicObject, &str)> = vec![
            (secret("!!! not base64"), "not valid base64 (helm)"),
            (
                secret(&base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 0x08, 1, 2])),
                "not a valid gzip stream",
            ),
            (
                secret(&encode(b"{\"name\": ")),
                "not valid Helm release JSON",
            ),
            (secret(&encode(b"[1, 2]")), "not valid Helm release JSON"),
        ];
        for (object, message) in cases {
            let err = decode_stored_record(&object).expect_err("must fail");
            assert!(err.to_string().contains(message), "{err} vs {message}");
        }
        let mut bad_api = secret("");
        bad_api.data["data"]["release"] = "%%%".into();
        assert!(matches!(
            decode_stored_record(&bad_api),
            Err(HelmError::Base64 {
                layer: "Secret data",
                ..
            })
        ));
        bad_api.data["data"] = serde_json::json!({});
        assert!(matches!(
            decode_stored_record(&bad_api),
            Err(HelmError::MissingRelease)
        ));
    }

    /// The shape Helm 4 writes (still `helm.sh/release.v1`): empty time
    /// fields omitted, `apply_method`, hooks with `last_run`. Synthetic (no
    /// Helm 4 in testenv yet), after Helm 4's release struct: it pins that
    /// the fields kubesweep reads are where they were and that the new ones
    /// are ignored.
    #[test]
    fn decodes_the_record_shape_helm_4_writes() {
        let helm4 = r#"{"name":"r","namespace":"ns","version":2,"apply_method":"ssa",
            "info":{"status":"deployed","description":"Upgrade complete"},
            "chart":{"metadata":{"name":"c","version":"2.0.0","apiVersion":"v2"}},
            "hooks":[{"name":"h","kind":"Job","path":"c/templates/h.yaml","manifest":"kind: Job",
                      "events":["post-install"],
                      "last_run":{"started_at":"2026-01-01T00:00:00Z","completed_at":"2026-01-01T00:00:01Z","phase":"Succeeded"}}],
            "manifest":"---\nkind: ConfigMap\n"}"#;
        let record = decode_release(encode(helm4.as_bytes()).as_bytes()).expect("decode");
        assert_eq!(
            (record.name.as_str(), record.version, record.status.as_str()),
            ("r", 2, "deployed")
        );
        assert_eq!(record.chart_version, "2.0.0");
        assert_eq!(record.manifest, "---\nkind: ConfigMap\n");
    }

    #[test]
    fn a_gigabyte_gzip_bomb_stops_at_the_cap_without_inflating_it() {
        use crate::hostile_inputs::{gzip_bomb, peak_rss_bytes};
        const GIB: u64 = 1024 * 1024 * 1024;
        // 1 GiB of zeros after a release's first bytes, about 1 MiB compressed.
        let bomb = gzip_bomb(b"{\"name\":\"", GIB);
        assert!(bomb.len() < 2 * 1024 * 1024, "{} bytes", bomb.len());
        let value = base64::engine::general_purpose::STANDARD.encode(&bomb);
        let started = std::time::Instant::now();
        let err = decode_release(value.as_bytes()).expect_err("too large");
        assert!(matches!(err, HelmError::TooLarge), "{err}");
        assert!(err.to_string().contains(&MAX_RELEASE_BYTES.to_string()));
        // Inflating it whole would take the process past 1 GiB; the cap keeps
        // it near MAX_RELEASE_BYTES (tests running alongside included).
        if let Some(peak) = peak_rss_bytes() {
            assert!(peak < GIB / 2, "peak RSS {peak} bytes");
        }
        eprintln!("bomb refused in {:?}", started.elapsed());
    }

    #[test]
    fn deeply_nested_release_json_neither_overflows_nor_is_misread() {
        let deep = crate::hostile_inputs::nested_json_arrays(100_000);
        // In a field kubesweep ignores, serde_json skips the nesting
        // without recursing: the release still decodes.
        let ignored = format!("{{\"name\":\"r\",\"extra\":{deep}}}");
        let record = decode_release(encode(ignored.as_bytes()).as_bytes()).expect("skipped");
        assert_eq!(record.name, "r");
        // In a field it reads, the nesting is the wrong type: an error.
        let read = format!("{{\"name\":\"r\",\"info\":{{\"status\":{deep}}}}}");
        let err = decode_release(encode(read.as_bytes()).as_bytes()).expect_err("misread");
        assert!(matches!(err, HelmError::Json(_)), "{err}");
        // As the whole document, it is refused at serde_json's recursion limit.
        let err = decode_release(encode(deep.as_bytes()).as_bytes()).expect_err("too deep");
        assert!(matches!(err, HelmError::Json(_)), "{err}");
    }

    #[test]
    fn deeply_nested_manifests_are_problems_not_stack_overflows() {
        for deep in crate::hostile_inputs::nested_yaml(100_000) {
            let (objects, problems) = crate::helm::parse_manifest(&format!("---\n{deep}\n"));
            assert!(objects.is_empty() && !problems.is_empty(), "{objects:?}");
        }
    }
}
