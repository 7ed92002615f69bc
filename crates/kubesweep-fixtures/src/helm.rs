//! Helm release records as Helm 3 stores them in Secrets (`sh.helm.release.v1.<name>.v<N>`):
//! the JSON release, gzip-compressed, base64-encoded into `data.release`.

use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The subset of a Helm release that an uninstaller reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Namespace the release was installed into.
    pub namespace: String,
    /// Revision, starting at 1.
    pub version: u32,
    /// Status and timestamps.
    pub info: ReleaseInfo,
    /// Chart metadata (Helm stores the whole chart; the metadata is enough here).
    pub chart: Chart,
    /// The rendered objects: a multi-document YAML stream.
    pub manifest: String,
}

/// `info` of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// `deployed`, `superseded`, `failed`, `uninstalling`...
    pub status: String,
    /// RFC 3339 time of the first install.
    pub first_deployed: String,
    /// RFC 3339 time of this revision.
    pub last_deployed: String,
    /// Free text, e.g. `Install complete`.
    pub description: String,
}

/// `chart` of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chart {
    /// Chart.yaml content.
    pub metadata: ChartMetadata,
}

/// The fields of Chart.yaml kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartMetadata {
    /// Chart name.
    pub name: String,
    /// Chart version.
    pub version: String,
    /// Version of the packaged application.
    #[serde(rename = "appVersion")]
    pub app_version: String,
}

impl Release {
    /// Name of the Secret that stores this revision.
    pub fn secret_name(&self) -> String {
        format!("sh.helm.release.v1.{}.v{}", self.name, self.version)
    }

    /// Encodes the release as the value of the Secret's `data.release` key (before the API's own
    /// base64 layer): base64(gzip(JSON)).
    pub fn encode(&self) -> Result<String> {
        let json = serde_json::to_vec(self).map_err(Error::Encode)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).map_err(Error::Compress)?;
        let compressed = gz.finish().map_err(Error::Compress)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(compressed))
    }

    /// Decodes a `data.release` value written by Helm or by [`Release::encode`].
    pub fn decode(data: &[u8]) -> Result<Release> {
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(data.trim_ascii())
            .map_err(|e| Error::Decode(e.to_string()))?;
        // Helm 3 always gzips; very old records were plain JSON, and reading them costs nothing.
        let json = if compressed.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(compressed.as_slice())
                .read_to_end(&mut out)
                .map_err(Error::Compress)?;
            out
        } else {
            compressed
        };
        serde_json::from_slice(&json).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// Renders objects as Helm renders a manifest: `---`, a `# Source:` comment, then block YAML.
pub fn render_manifest(chart: &str, docs: &[(&str, Value)]) -> String {
    let mut out = String::new();
    for (template, doc) in docs {
        out.push_str("---\n");
        out.push_str(&format!("# Source: {chart}/templates/{template}\n"));
        write_yaml(&mut out, doc, 0);
    }
    out
}

/// A small block-YAML writer: keys that need it and all strings are double-quoted, which YAML reads
/// exactly as JSON strings, so no value can be misread (`"on"`, `"1.0"`, `"true"`).
fn write_yaml(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => write_map(out, map, indent),
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key shares the dash's line; the rest align under it.
                        let mut first = String::new();
                        write_map(&mut first, m, indent + 2);
                        out.push_str(first.trim_start());
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        write_yaml(out, item, indent + 2);
                    }
                    scalar => {
                        out.push_str(&scalar_yaml(scalar));
                        out.push('\n');
                    }
                }
            }
        }
        scalar => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&scalar_yaml(scalar));
            out.push('\n');
        }
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, v) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_key(key));
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(out, m, indent + 2);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_yaml(out, v, indent);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_yaml(scalar));
                out.push('\n');
            }
        }
    }
}

fn yaml_key(key: &str) -> String {
    // YAML 1.1 readers take these words as booleans or null even as keys.
    const AMBIGUOUS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && !AMBIGUOUS.contains(&key.to_ascii_lowercase().as_str())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn scalar_yaml(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Release {
        Release {
            name: "whizard-monitoring".into(),
            namespace: "extension-whizard-monitoring".into(),
            version: 1,
            info: ReleaseInfo {
                status: "deployed".into(),
                first_deployed: "2025-01-01T00:00:00Z".into(),
                last_deployed: "2025-01-01T00:00:00Z".into(),
                description: "Install complete".into(),
            },
            chart: Chart {
                metadata: ChartMetadata {
                    name: "whizard-monitoring".into(),
                    version: "1.1.0".into(),
                    app_version: "1.1.0".into(),
                },
            },
            manifest: render_manifest(
                "whizard-monitoring",
                &[("cm.yaml", json!({"kind": "ConfigMap"}))],
            ),
        }
    }

    #[test]
    fn release_round_trips_through_base64_gzip_json() {
        let r = sample();
        let encoded = r.encode().expect("encode");
        assert!(encoded.is_ascii());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .expect("base64");
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic");
        assert_eq!(Release::decode(encoded.as_bytes()).expect("decode"), r);
        assert_eq!(r.secret_name(), "sh.helm.release.v1.whizard-monitoring.v1");
    }

    #[test]
    fn decode_reads_uncompressed_json_too() {
        let r = sample();
        let plain =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&r).expect("json"));
        assert_eq!(Release::decode(plain.as_bytes()).expect("decode"), r);
    }

    #[test]
    fn manifest_is_block_yaml_with_sources() {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"kubesphere.io/extension-ref": "x"}},
            "data": {"on": "true", "list": ""},
            "items": [{"a": 1, "b": [1, 2]}, "s"],
            "empty": {}
        });
        let y = render_manifest("chart", &[("cm.yaml", doc)]);
        let expected = "---\n# Source: chart/templates/cm.yaml\n\
apiVersion: \"v1\"\ndata:\n  list: \"\"\n  \"on\": \"true\"\nempty: {}\n\
items:\n- a: 1\n  b:\n  - 1\n  - 2\n- \"s\"\nkind: \"ConfigMap\"\n\
metadata:\n  labels:\n    kubesphere.io/extension-ref: \"x\"\n  name: \"a\"\n";
        assert_eq!(y, expected);
    }
}
