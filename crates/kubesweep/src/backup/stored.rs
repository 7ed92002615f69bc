//! An encrypted backup archive kept in the cluster, for hook mode: the Job's
//! pod and its files go with the Job, so the archive (already written,
//! fsynced and verified on the pod's disk) is copied into Secrets of a
//! namespace that survives the uninstall, `kubesweep-backups`, in chunks
//! below the API server's 1 MiB limit on a Secret's data, and fetched back
//! (`kubesweep backup fetch RUN`), reassembled and checked against the
//! sha256 of the archive as written.
//!
//! Only age-encrypted archives are stored: the archive holds the platform's
//! Secrets, and whoever may read Secrets in that namespace must not read
//! them in clear text. The caller enforces that.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The namespace that keeps stored backups.
pub const BACKUP_NAMESPACE: &str = "kubesweep-backups";
/// Label naming a stored backup's run (`kubesweep backup fetch RUN`).
pub const RUN_LABEL: &str = "kubesweep.io/backup-run";
/// Bytes of archive per Secret: under the 1 MiB limit on a Secret's data.
pub const CHUNK_BYTES: usize = 900 * 1024;

const CHUNK_ANNOTATION: &str = "kubesweep.io/chunk";
const SHA_ANNOTATION: &str = "kubesweep.io/archive-sha256";
const FILE_ANNOTATION: &str = "kubesweep.io/archive-name";
const DATA_KEY: &str = "chunk";

/// Errors of storing or fetching.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// A request failed.
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Nothing stored under that run.
    #[error("no backup of run {run} in namespace {BACKUP_NAMESPACE}")]
    NotFound {
        /// The run asked for.
        run: String,
    },
    /// Chunks missing, of several archives, or not matching the checksum.
    #[error("backup of run {run} in namespace {BACKUP_NAMESPACE} is damaged: {why}")]
    Damaged {
        /// The run.
        run: String,
        /// What is wrong.
        why: String,
    },
}

/// The run id of an archive file name: `kubesweep-backup-<run>.tar.gz[.age]`
/// gives `<run>`, lower-cased (it is a label value and part of Secret names).
pub fn run_id(file_name: &str) -> String {
    let stem = file_name
        .strip_prefix("kubesweep-backup-")
        .unwrap_or(file_name);
    let stem = stem.split(".tar").next().unwrap_or(stem);
    stem.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The Secrets that hold `bytes` (pure): `kubesweep-backup-<run>-<i>`, each
/// with its chunk number, the whole archive's sha256 and file name.
pub fn chunks(run: &str, file_name: &str, bytes: &[u8]) -> Vec<Secret> {
    let sha = hex::encode(Sha256::digest(bytes));
    let parts: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(CHUNK_BYTES).collect()
    };
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("kubesweep-backup-{run}-{i:03}")),
                namespace: Some(BACKUP_NAMESPACE.to_owned()),
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "kubesweep".to_owned(),
                    ),
                    (RUN_LABEL.to_owned(), run.to_owned()),
                ])),
                annotations: Some(BTreeMap::from([
                    (CHUNK_ANNOTATION.to_owned(), format!("{}/{total}", i + 1)),
                    (SHA_ANNOTATION.to_owned(), sha.clone()),
                    (FILE_ANNOTATION.to_owned(), file_name.to_owned()),
                ])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(
                DATA_KEY.to_owned(),
                ByteString(part.to_vec()),
            )])),
            ..Default::default()
        })
        .collect()
}

/// Reassembles an archive from its Secrets (pure): every chunk present
/// once, one archive, and the sha256 it was stored with. Returns the file
/// name and the bytes.
pub fn reassemble(run: &str, secrets: &[Secret]) -> Result<(String, Vec<u8>), StoredError> {
    let damaged = |why: String| StoredError::Damaged {
        run: run.to_owned(),
        why,
    };
    if secrets.is_empty() {
        return Err(StoredError::NotFound {
            run: run.to_owned(),
        });
    }
    let mut parts: BTreeMap<usize, &[u8]> = BTreeMap::new();
    let mut total = None;
    let mut sha = None;
    let mut file = None;
    for s in secrets {
        let name = s.name_any();
        let annotation = |key: &str| {
            s.annotations()
                .get(key)
                .cloned()
                .ok_or_else(|| damaged(format!("{name} has no {key}")))
        };
        let chunk = annotation(CHUNK_ANNOTATION)?;
        let (index, of) = chunk
            .split_once('/')
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
            .ok_or_else(|| damaged(format!("{name}: chunk {chunk:?}")))?;
        for (seen, value, what) in [
            (&mut total, of.to_string(), "chunk count"),
            (&mut sha, annotation(SHA_ANNOTATION)?, "checksum"),
            (&mut file, annotation(FILE_ANNOTATION)?, "file name"),
        ] {
            match seen {
                Some(v) if *v != value => {
                    return Err(damaged(format!(
                        "{name}: another {what} ({value}, not {v})"
                    )));
                }
                _ => *seen = Some(value),
            }
        }
        let data = s
            .data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .ok_or_else(|| damaged(format!("{name} holds no data")))?;
        if parts.insert(index, &data.0).is_some() {
            return Err(damaged(format!("chunk {index} twice")));
        }
    }
    let total: usize = total.unwrap_or_default().parse().unwrap_or_default();
    if parts.len() != total || parts.keys().copied().ne(1..=total) {
        return Err(damaged(format!(
            "{} of {total} chunks present",
            parts.len()
        )));
    }
    let bytes: Vec<u8> = parts.values().flat_map(|p| p.iter().copied()).collect();
    let actual = hex::encode(Sha256::digest(&bytes));
    let expected = sha.unwrap_or_default();
    if actual != expected {
        return Err(damaged(format!(
            "the chunks hash to sha256 {actual}, stored as {expected}"
        )));
    }
    Ok((file.unwrap_or_default(), bytes))
}

/// Stores an archive (its namespace is created when missing), reads it back
/// and checks it: returns the run id and the Secrets' names.
pub async fn store(
    client: &Client,
    file_name: &str,
    bytes: &[u8],
) -> Result<(String, Vec<String>), StoredError> {
    let run = run_id(file_name);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": BACKUP_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "kubesweep"},
        }
    }))
    .map_err(|e| StoredError::Api {
        what: "build namespace".into(),
        source: kube::Error::SerdeError(e),
    })?;
    let params = PostParams {
        field_manager: Some(crate::execute::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match namespaces.create(&params, &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(source) => {
            return Err(StoredError::Api {
                what: format!("create namespace {BACKUP_NAMESPACE}"),
                source,
            });
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), BACKUP_NAMESPACE);
    let mut names = Vec::new();
    for secret in chunks(&run, file_name, bytes) {
        let name = secret.name_any();
        secrets
            .create(&params, &secret)
            .await
            .map_err(|source| StoredError::Api {
                what: format!("create secret {BACKUP_NAMESPACE}/{name}"),
                source,
            })?;
        names.push(name);
    }
    let (_, read_back) = fetch(client, &run).await?;
    if read_back != bytes {
        return Err(StoredError::Damaged {
            run,
            why: "read back differs from the archive".into(),
        });
    }
    Ok((run, names))
}

/// Fetches and reassembles the archive of `run`.
pub async fn fetch(client: &Client, run: &str) -> Result<(String, Vec<u8>), StoredError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), BACKUP_NAMESPACE);
    let list = secrets
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await
        .map_err(|source| StoredError::Api {
            what: format!("list secrets in {BACKUP_NAMESPACE}"),
            source,
        })?;
    reassemble(run, &list.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_damage_is_named() {
        let bytes: Vec<u8> = (0..(2 * CHUNK_BYTES + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let name = "kubesweep-backup-20261130T081514Z-a8c11f68.tar.gz.age";
        let run = run_id(name);
        assert_eq!(run, "20261130t081514z-a8c11f68");
        let secrets = chunks(&run, name, &bytes);
        assert_eq!(secrets.len(), 3);
        assert!(
            secrets
                .iter()
                .all(|s| { s.data.as_ref().expect("data")[DATA_KEY].0.len() <= CHUNK_BYTES })
        );
        let (file, back) = reassemble(&run, &secrets).expect("reassembles");
        assert_eq!((file.as_str(), back), (name, bytes.clone()));
        // Order does not matter; a missing or altered chunk does.
        let mut shuffled = secrets.clone();
        shuffled.reverse();
        assert!(reassemble(&run, &shuffled).is_ok());
        let missing = &secrets[..2];
        assert!(matches!(
            reassemble(&run, missing),
            Err(StoredError::Damaged { .. })
        ));
        let mut altered = secrets.clone();
        if let Some(data) = altered[1].data.as_mut() {
            data.insert(DATA_KEY.into(), ByteString(vec![0; 3]));
        }
        let err = reassemble(&run, &altered).expect_err("altered");
        assert!(err.to_string().contains("hash to sha256"), "{err}");
        assert!(matches!(
            reassemble(&run, &[]),
            Err(StoredError::NotFound { .. })
        ));
    }
}
