//! Encoding and decoding of archive bytes: the tar + gzip stream with its
//! metadata, index and one YAML file per object, optional age encryption of
//! the whole stream, and the verification every reader runs before trusting
//! anything (format version, index checksum, every entry's checksum, no
//! missing or extra file, gzip trailer). No file system access here: the
//! caller decides where the bytes live.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::Value;

use super::collect::BackupObject;
use super::format::{
    BackupMetadata, FORMAT_VERSION, INDEX_PATH, Index, IndexEntry, METADATA_PATH, entry_path,
    from_yaml, now_rfc3339, sha256_hex, to_yaml,
};
use crate::inventory::ClusterIdentity;

/// First bytes of every binary age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";
/// First bytes of every gzip stream.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Largest file of an archive read. An object the API server stores is at
/// most a few MiB (etcd refuses requests over 1.5 MiB by default); the index
/// of a 100,000-object backup is about 50 MiB. The cap stops a gzip bomb in
/// one entry after this many bytes instead of inflating it whole.
pub const MAX_ENTRY_BYTES: u64 = 128 * 1024 * 1024;

/// Largest archive read, all files decompressed. Writing verifies the
/// archive with the same reader, so a backup over this size is refused
/// before any change rather than written and found unreadable at restore.
pub const MAX_ARCHIVE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Why an archive could not be written or read. Every read error means the
/// archive must not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An object could not be serialised.
    #[error("failed to serialise {object}: {message}")]
    Encode {
        /// Which object.
        object: String,
        /// Why.
        message: String,
    },
    /// Compression or tar I/O failed while writing.
    #[error("failed to write the archive stream")]
    Write(#[source] std::io::Error),
    /// The bytes are not a gzip stream (nor an age file).
    #[error("not a kubesweep backup: neither gzip nor age-encrypted data")]
    NotAnArchive,
    /// The archive is encrypted and no identity was given.
    #[error("the archive is encrypted with age; pass --identity FILE to read it")]
    Encrypted,
    /// Decryption failed (wrong identity, corrupted ciphertext).
    #[error("failed to decrypt the archive")]
    Decrypt(#[source] Box<age::DecryptError>),
    /// Encryption failed.
    #[error("failed to encrypt the archive")]
    Encrypt(#[source] Box<age::EncryptError>),
    /// The tar or gzip stream is damaged or truncated.
    #[error("the archive is damaged or truncated")]
    Corrupt(#[source] std::io::Error),
    /// A file, or the archive as a whole, decompresses past its cap
    /// ([`MAX_ENTRY_BYTES`], [`MAX_ARCHIVE_BYTES`]).
    #[error("{path} is larger than {limit} bytes (damaged, or not a kubesweep backup)")]
    TooLarge {
        /// The file being read when the cap was reached.
        path: String,
        /// The cap.
        limit: u64,
    },
    /// A required document is missing.
    #[error("the archive has no {0} (truncated or not a kubesweep backup)")]
    Missing(&'static str),
    /// `metadata.json` or `index.json` does not parse.
    #[error("{path} is malformed: {message}")]
    Malformed {
        /// Which document.
        path: String,
        /// Parser message.
        message: String,
    },
    /// Written by an unknown format version.
    #[error("unsupported backup format version {found} (this kubesweep reads {FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A checksum does not match.
    #[error("checksum mismatch for {path}: expected {expected}, found {found}")]
    Checksum {
        /// The file.
        path: String,
        /// From the index (or the metadata, for the index).
        expected: String,
        /// Of the bytes read.
        found: String,
    },
    /// The index names a file the archive does not hold.
    #[error("{path} is listed in the index but missing from the archive (truncated?)")]
    MissingEntry {
        /// The file.
        path: String,
    },
    /// The archive holds a file the index does not name.
    #[error("{path} is in the archive but not in the index")]
    Unlisted {
        /// The file.
        path: String,
    },
    /// The index and the metadata disagree on the number of objects.
    #[error("the metadata announces {expected} objects, the index lists {found}")]
    Count {
        /// From the metadata.
        expected: usize,
        /// In the index.
        found: usize,
    },
}

/// What goes into `metadata.json` besides what the writer computes.
#[derive(Clone, Debug, Default)]
pub struct MetadataInput {
    /// The cluster the objects were read from.
    pub cluster: ClusterIdentity,
    /// Profile of the plan.
    pub profile: String,
    /// Digest of the plan.
    pub plan_digest: String,
    /// Types that could not be read (see [`BackupMetadata::incomplete`]).
    pub incomplete: Vec<String>,
}

/// One verified object of an archive.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObject {
    /// Its index entry.
    pub entry: IndexEntry,
    /// The object as stored.
    pub object: Value,
}

/// A fully read and verified archive.
#[derive(Clone, Debug, PartialEq)]
pub struct Archive {
    /// `metadata.json`.
    pub metadata: BackupMetadata,
    /// Every object, in index order.
    pub objects: Vec<StoredObject>,
}

/// An archive's `metadata.json` and `index.json`, computed from its objects
/// before any byte of the stream is written: both come first in the tar
/// stream and hold every object's checksum, so the objects are serialised
/// once here (and dropped: only their checksums are kept) and once more as
/// they are written ([`Prepared::write_to`]). Two passes over the YAML cost
/// CPU, one pass keeping every file would cost memory proportional to the
/// backup.
#[derive(Debug)]
pub struct Prepared {
    metadata_bytes: Vec<u8>,
    index_bytes: Vec<u8>,
    /// Path and checksum of each object's file, in `objects` order.
    files: Vec<(String, String)>,
}

impl Prepared {
    /// Objects in the archive.
    pub fn entries(&self) -> usize {
        self.files.len()
    }

    /// Writes the gzip-compressed tar stream of `objects` (the same ones,
    /// in the same order, as given to [`prepare`]) to `out`, object by
    /// object, and returns `out` once the gzip trailer is written. An object
    /// that serialises differently from the first pass is an error.
    pub fn write_to<W: Write>(&self, objects: &[BackupObject], out: W) -> Result<W, ArchiveError> {
        let gz = GzEncoder::new(out, Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut append = |path: &str, data: &[u8]| -> Result<(), ArchiveError> {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            // The archive holds Secrets: whoever extracts it gets private files.
            header.set_mode(0o600);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, data)
                .map_err(ArchiveError::Write)
        };
        append(METADATA_PATH, &self.metadata_bytes)?;
        append(INDEX_PATH, &self.index_bytes)?;
        if objects.len() != self.files.len() {
            return Err(ArchiveError::Encode {
                object: INDEX_PATH.into(),
                message: format!(
                    "{} objects prepared, {} written",
                    self.files.len(),
                    objects.len()
                ),
            });
        }
        for (o, (path, sha256)) in objects.iter().zip(&self.files) {
            let bytes = yaml_bytes(o, path)?;
            if sha256_hex(&bytes) != *sha256 {
                return Err(ArchiveError::Encode {
                    object: path.clone(),
                    message: "serialised differently from its index entry".into(),
                });
            }
            append(path, &bytes)?;
        }
        let gz = tar.into_inner().map_err(ArchiveError::Write)?;
        gz.finish().map_err(ArchiveError::Write)
    }
}

fn yaml_bytes(o: &BackupObject, path: &str) -> Result<Vec<u8>, ArchiveError> {
    to_yaml(&o.object)
        .map(String::into_bytes)
        .map_err(|message| ArchiveError::Encode {
            object: path.to_owned(),
            message,
        })
}

/// Computes the metadata and index of the archive of `objects` (the first
/// of the two passes, see [`Prepared`]).
pub fn prepare(objects: &[BackupObject], input: &MetadataInput) -> Result<Prepared, ArchiveError> {
    let mut files: Vec<(String, String)> = Vec::with_capacity(objects.len());
    let mut index = PrettyIndex::default();
    let mut used: HashSet<String> = HashSet::new();
    for o in objects {
        let mut path = entry_path(&o.resource, o.namespace(), o.name());
        if !used.insert(path.clone()) {
            // Two objects at one path (same name seen through two versions of
            // one kind): keep both, told apart by UID.
            path = format!("{}.{}.yaml", path.trim_end_matches(".yaml"), o.uid());
            used.insert(path.clone());
        }
        let bytes = yaml_bytes(o, &path)?;
        let sha256 = sha256_hex(&bytes);
        index.push(&IndexEntry {
            path: path.clone(),
            resource: o.resource.clone(),
            api_version: o.resource.api_version(),
            kind: o.resource.kind.clone(),
            namespace: o.namespace().map(str::to_owned),
            name: o.name().to_owned(),
            uid: o.uid().to_owned(),
            operations: o.operations.clone(),
            source: o.source,
            restore: o.mode,
            removed: o.removed.clone(),
            terminating: o.object.pointer("/metadata/deletionTimestamp").is_some(),
            sha256: sha256.clone(),
            size: bytes.len() as u64,
        })?;
        files.push((path, sha256));
    }
    let entries = index.entries;
    let index_bytes = index.finish();
    let metadata = BackupMetadata {
        format_version: FORMAT_VERSION,
        kubesweep_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now_rfc3339(),
        cluster: input.cluster.clone(),
        profile: input.profile.clone(),
        plan_digest: input.plan_digest.clone(),
        entries,
        index_sha256: sha256_hex(&index_bytes),
        incomplete: input.incomplete.clone(),
    };
    let metadata_bytes = pretty(&metadata, METADATA_PATH)?;
    Ok(Prepared {
        metadata_bytes,
        index_bytes,
        files,
    })
}

/// `index.json` built entry by entry as each object is prepared: the same
/// bytes as `serde_json::to_vec_pretty(&Index { entries })`, without holding
/// the entries (at 50,000 objects, the entries and the growing buffer of
/// their serialisation were both held whole, about 20 MiB).
#[derive(Default)]
struct PrettyIndex {
    bytes: Vec<u8>,
    entries: usize,
}

impl PrettyIndex {
    /// The opening of a non-empty index, up to its first entry.
    const OPEN: &'static [u8] = b"{\n  \"entries\": [\n";
    /// An entry's lines sit two levels deep.
    const INDENT: &'static [u8] = b"    ";

    fn push(&mut self, entry: &IndexEntry) -> Result<(), ArchiveError> {
        let json = pretty(entry, INDEX_PATH)?;
        self.bytes.extend_from_slice(if self.entries == 0 {
            Self::OPEN
        } else {
            b",\n"
        });
        // serde_json escapes every control character inside strings, so
        // each newline of `json` starts a line of the pretty output.
        for (i, line) in json.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                self.bytes.push(b'\n');
            }
            self.bytes.extend_from_slice(Self::INDENT);
            self.bytes.extend_from_slice(line);
        }
        self.entries += 1;
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        if self.entries == 0 {
            return b"{\n  \"entries\": []\n}".to_vec();
        }
        self.bytes.extend_from_slice(b"\n  ]\n}");
        self.bytes.shrink_to_fit();
        self.bytes
    }
}

/// Encodes `objects` as a gzip-compressed tar stream, in memory.
pub fn encode(objects: &[BackupObject], input: &MetadataInput) -> Result<Vec<u8>, ArchiveError> {
    prepare(objects, input)?.write_to(objects, Vec::new())
}

fn pretty<T: serde::Serialize>(value: &T, path: &str) -> Result<Vec<u8>, ArchiveError> {
    serde_json::to_vec_pretty(value).map_err(|e| ArchiveError::Encode {
        object: path.to_owned(),
        message: e.to_string(),
    })
}

/// Encrypts archive bytes to every recipient (any one identity decrypts).
pub fn encrypt(
    plain: &[u8],
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::with_capacity(plain.len() + 1024);
    let mut writer = encrypting(recipients, &mut out)?;
    writer.write_all(plain).map_err(ArchiveError::Write)?;
    writer.finish().map_err(ArchiveError::Write)?;
    Ok(out)
}

/// An age writer around `out`: what is written to it reaches `out`
/// encrypted to every recipient; `finish` writes the last chunk.
pub fn encrypting<W: Write>(
    recipients: &[Box<dyn age::Recipient + Send>],
    out: W,
) -> Result<age::stream::StreamWriter<W>, ArchiveError> {
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| ArchiveError::Encrypt(Box::new(e)))?;
    encryptor.wrap_output(out).map_err(ArchiveError::Write)
}

/// Whether `bytes` look like an age-encrypted file.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}

/// Decrypts (when needed) and fully verifies archive bytes. Nothing of an
/// archive is returned unless all of it checks out.
pub fn decode(
    bytes: &[u8],
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> Result<Archive, ArchiveError> {
    if is_encrypted(bytes) {
        if identities.is_empty() {
            return Err(ArchiveError::Encrypted);
        }
        let decryptor =
            age::Decryptor::new(bytes).map_err(|e| ArchiveError::Decrypt(Box::new(e)))?;
        let mut reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| ArchiveError::Decrypt(Box::new(e)))?;
        let mut plain = Vec::new();
        reader
            .read_to_end(&mut plain)
            .map_err(ArchiveError::Corrupt)?;
        return decode_plain(&plain);
    }
    decode_plain(bytes)
}

fn decode_plain(bytes: &[u8]) -> Result<Archive, ArchiveError> {
    if !bytes.starts_with(GZIP_MAGIC) {
        return Err(ArchiveError::NotAnArchive);
    }
    let mut tar = tar::Archive::new(GzDecoder::new(bytes));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut total: u64 = 0;
    for entry in tar.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let path = entry
            .path()
            .map_err(ArchiveError::Corrupt)?
            .to_string_lossy()
            .into_owned();
        let limit = MAX_ENTRY_BYTES.min(MAX_ARCHIVE_BYTES - total);
        let data = read_capped(&mut entry, limit).map_err(|e| match e {
            Capped::Io(e) => ArchiveError::Corrupt(e),
            Capped::Over => ArchiveError::TooLarge {
                path: path.clone(),
                limit: if limit == MAX_ENTRY_BYTES {
                    MAX_ENTRY_BYTES
                } else {
                    MAX_ARCHIVE_BYTES
                },
            },
        })?;
        total += data.len() as u64;
        files.insert(path, data);
    }
    // tar stops at its end marker; reading on makes gzip check its CRC and
    // length trailer, which catches damage and truncation past the marker.
    // Past the marker is only padding: capped like a file.
    read_capped(&mut tar.into_inner(), MAX_ENTRY_BYTES).map_err(|e| match e {
        Capped::Io(e) => ArchiveError::Corrupt(e),
        Capped::Over => ArchiveError::TooLarge {
            path: "the data after the tar end marker".into(),
            limit: MAX_ENTRY_BYTES,
        },
    })?;

    let metadata_bytes = files
        .remove(METADATA_PATH)
        .ok_or(ArchiveError::Missing(METADATA_PATH))?;
    let metadata = parse_metadata(&metadata_bytes)?;
    let index_bytes = files
        .remove(INDEX_PATH)
        .ok_or(ArchiveError::Missing(INDEX_PATH))?;
    let index: Index = checked_index(&index_bytes, &metadata)?;
    let mut objects = Vec::with_capacity(index.entries.len());
    for entry in index.entries {
        let bytes = files
            .remove(&entry.path)
            .ok_or_else(|| ArchiveError::MissingEntry {
                path: entry.path.clone(),
            })?;
        let found = sha256_hex(&bytes);
        if found != entry.sha256 {
            return Err(ArchiveError::Checksum {
                path: entry.path.clone(),
                expected: entry.sha256.clone(),
                found,
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| ArchiveError::Malformed {
            path: entry.path.clone(),
            message: e.to_string(),
        })?;
        let object = from_yaml(&text).map_err(|message| ArchiveError::Malformed {
            path: entry.path.clone(),
            message,
        })?;
        objects.push(StoredObject { entry, object });
    }
    if let Some(path) = files.into_keys().next() {
        return Err(ArchiveError::Unlisted { path });
    }
    Ok(Archive { metadata, objects })
}

/// Verifies a plain (unencrypted) archive read from `reader` as
/// [`decode`] does (format version, index checksum, every file's checksum,
/// every object a YAML document, nothing missing or extra, the caps, the
/// gzip trailer) but one file at a time, keeping no object: memory stays
/// that of the index, whatever the archive's size. Returns the number of
/// objects. Needs `metadata.json` and `index.json` first, as this writer
/// puts them: it verifies what kubesweep just wrote, before any change.
pub fn verify_stream<R: Read>(mut reader: R) -> Result<usize, ArchiveError> {
    let mut magic = [0u8; 2];
    reader
        .read_exact(&mut magic)
        .map_err(|_| ArchiveError::NotAnArchive)?;
    if magic != GZIP_MAGIC {
        return Err(ArchiveError::NotAnArchive);
    }
    let mut tar = tar::Archive::new(GzDecoder::new((&magic[..]).chain(reader)));
    let mut total: u64 = 0;
    let mut metadata: Option<BackupMetadata> = None;
    // Index order, and each path's expected checksum until its file is seen.
    let mut order: Vec<String> = Vec::new();
    let mut expected: std::collections::HashMap<String, String> = Default::default();
    let mut index_read = false;
    for entry in tar.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let path = entry
            .path()
            .map_err(ArchiveError::Corrupt)?
            .to_string_lossy()
            .into_owned();
        let limit = MAX_ENTRY_BYTES.min(MAX_ARCHIVE_BYTES - total);
        let data = read_capped(&mut entry, limit).map_err(|e| capped_error(e, &path, limit))?;
        total += data.len() as u64;
        let Some(meta) = &metadata else {
            if path != METADATA_PATH {
                return Err(ArchiveError::Missing(METADATA_PATH));
            }
            metadata = Some(parse_metadata(&data)?);
            continue;
        };
        if !index_read {
            if path != INDEX_PATH {
                return Err(ArchiveError::Missing(INDEX_PATH));
            }
            index_read = true;
            let checksums: IndexChecksums = checked_index(&data, meta)?;
            for (path, sha256) in checksums.entries.0 {
                if expected.insert(path.clone(), sha256).is_some() {
                    // Listed twice: the second listing has no file of its own.
                    return Err(ArchiveError::MissingEntry { path });
                }
                order.push(path);
            }
            continue;
        }
        let Some(sha256) = expected.remove(&path) else {
            return Err(ArchiveError::Unlisted { path });
        };
        let found = sha256_hex(&data);
        if found != sha256 {
            return Err(ArchiveError::Checksum {
                path,
                expected: sha256,
                found,
            });
        }
        let text = String::from_utf8(data).map_err(|e| ArchiveError::Malformed {
            path: path.clone(),
            message: e.to_string(),
        })?;
        from_yaml(&text).map_err(|message| ArchiveError::Malformed { path, message })?;
    }
    read_capped(&mut tar.into_inner(), MAX_ENTRY_BYTES)
        .map_err(|e| capped_error(e, "the data after the tar end marker", MAX_ENTRY_BYTES))?;
    if metadata.is_none() {
        return Err(ArchiveError::Missing(METADATA_PATH));
    }
    if !index_read {
        return Err(ArchiveError::Missing(INDEX_PATH));
    }
    if let Some(path) = order.into_iter().find(|p| expected.contains_key(p)) {
        return Err(ArchiveError::MissingEntry { path });
    }
    Ok(metadata.map_or(0, |m| m.entries))
}

fn capped_error(e: Capped, path: &str, limit: u64) -> ArchiveError {
    match e {
        Capped::Io(e) => ArchiveError::Corrupt(e),
        Capped::Over => ArchiveError::TooLarge {
            path: path.to_owned(),
            limit: if limit == MAX_ENTRY_BYTES {
                MAX_ENTRY_BYTES
            } else {
                MAX_ARCHIVE_BYTES
            },
        },
    }
}

/// Why [`read_capped`] stopped.
enum Capped {
    Io(std::io::Error),
    Over,
}

/// `metadata.json` parsed, and refused unless it is of this format version.
fn parse_metadata(bytes: &[u8]) -> Result<BackupMetadata, ArchiveError> {
    let metadata: BackupMetadata =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::Malformed {
            path: METADATA_PATH.into(),
            message: e.to_string(),
        })?;
    if metadata.format_version != FORMAT_VERSION {
        return Err(ArchiveError::Version {
            found: metadata.format_version,
        });
    }
    Ok(metadata)
}

/// `index.json` checked against the checksum and entry count `metadata`
/// holds for it, then parsed.
fn checked_index<T: ParsedIndex>(
    bytes: &[u8],
    metadata: &BackupMetadata,
) -> Result<T, ArchiveError> {
    let found = sha256_hex(bytes);
    if found != metadata.index_sha256 {
        return Err(ArchiveError::Checksum {
            path: INDEX_PATH.into(),
            expected: metadata.index_sha256.clone(),
            found,
        });
    }
    let index: T = serde_json::from_slice(bytes).map_err(|e| ArchiveError::Malformed {
        path: INDEX_PATH.into(),
        message: e.to_string(),
    })?;
    if index.len() != metadata.entries {
        return Err(ArchiveError::Count {
            expected: metadata.entries,
            found: index.len(),
        });
    }
    Ok(index)
}

/// An `index.json` parsed whole ([`Index`], for the loader) or as the
/// streaming verifier keeps it ([`IndexChecksums`]).
trait ParsedIndex: serde::de::DeserializeOwned {
    /// Entries listed.
    fn len(&self) -> usize;
}

impl ParsedIndex for Index {
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// `index.json` as [`verify_stream`] keeps it: every entry is parsed whole,
/// so one the loader would refuse is refused here too, but only its path and
/// checksum are kept (the whole entries of a 50,000-object index are about
/// 10 MiB more, on the verifying thread, while the archive is written).
#[derive(serde::Deserialize)]
struct IndexChecksums {
    entries: Checksums,
}

impl ParsedIndex for IndexChecksums {
    fn len(&self) -> usize {
        self.entries.0.len()
    }
}

/// Path and checksum of each entry, in index order.
struct Checksums(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Checksums {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> serde::de::Visitor<'de> for EntriesVisitor {
            type Value = Checksums;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of index entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Checksums, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = seq.next_element::<IndexEntry>()? {
                    out.push((entry.path, entry.sha256));
                }
                Ok(Checksums(out))
            }
        }
        deserializer.deserialize_seq(EntriesVisitor)
    }
}

/// Reads to the end, but never more than `limit` bytes: one byte past it
/// means the stream is over the cap, and reading stops there. The buffer
/// grows with what is actually read (a tar header's size is not trusted for
/// the allocation).
fn read_capped(reader: &mut impl Read, limit: u64) -> Result<Vec<u8>, Capped> {
    let mut data = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(Capped::Io)?;
    if data.len() as u64 > limit {
        return Err(Capped::Over);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::format::{RemovedMetadata, RestoreMode, Source};
    use crate::resource::ResourceType;
    use serde_json::json;

    fn objects() -> Vec<BackupObject> {
        let secrets = ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
            namespaced: true,
        };
        let users = ResourceType {
            group: "iam.kubesphere.io".into(),
            version: "v1beta1".into(),
            kind: "User".into(),
            plural: "users".into(),
            namespaced: false,
        };
        let namespaces = ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
            namespaced: false,
        };
        let mut kept = BackupObject {
            resource: namespaces,
            object: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "uid": "n1", "labels": {"kubesphere.io/workspace": "system-workspace"}}}),
            operations: vec!["strip metadata".into()],
            source: Source::PlanTarget,
            mode: RestoreMode::PutBack,
            removed: None,
        };
        kept.removed = Some(RemovedMetadata {
            labels: [("kubesphere.io/workspace".into(), "system-workspace".into())].into(),
            ..Default::default()
        });
        vec![
            BackupObject {
                resource: secrets,
                object: json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sh.helm.release.v1.ks-core.v1", "namespace": "kubesphere-system", "uid": "s1"}, "type": "helm.sh/release.v1", "data": {"release": "SDRzSUFBQUFBQUFBLw=="}}),
                operations: vec!["delete".into()],
                source: Source::NamespaceContent,
                mode: RestoreMode::Recreate,
                removed: None,
            },
            BackupObject {
                resource: users,
                object: json!({"apiVersion": "iam.kubesphere.io/v1beta1", "kind": "User", "metadata": {"name": "admin", "uid": "u1", "deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["finalizers.kubesphere.io/users"]}, "spec": {"email": "admin@kubesphere.io"}}),
                operations: vec!["strip finalizers, delete".into()],
                source: Source::PlanTarget,
                mode: RestoreMode::Recreate,
                removed: None,
            },
            kept,
        ]
    }

    fn input() -> MetadataInput {
        MetadataInput {
            cluster: ClusterIdentity {
                kube_system_uid: "ks-uid".into(),
                server: "https://127.0.0.1:6443".into(),
                context: None,
            },
            profile: "kubesphere".into(),
            plan_digest: "abc".into(),
            incomplete: vec![],
        }
    }

    fn no_identity() -> Vec<Box<dyn age::Identity + Send + Sync>> {
        Vec::new()
    }

    #[test]
    fn the_index_built_entry_by_entry_is_what_serde_writes_whole() {
        let prepared = prepare(&objects(), &input()).expect("prepare");
        let index: Index = serde_json::from_slice(&prepared.index_bytes).expect("parses");
        assert_eq!(index.entries.len(), objects().len());
        assert!(index.entries.iter().any(|e| e.removed.is_some()));
        let whole = serde_json::to_vec_pretty(&index).expect("serialises");
        assert_eq!(
            String::from_utf8_lossy(&prepared.index_bytes),
            String::from_utf8_lossy(&whole)
        );
        let empty = prepare(&[], &input()).expect("prepare");
        let whole = serde_json::to_vec_pretty(&Index::default()).expect("serialises");
        assert_eq!(empty.index_bytes, whole);
    }

    #[test]
    fn the_verifier_keeps_paths_and_checksums_but_refuses_what_the_loader_refuses() {
        let prepared = prepare(&objects(), &input()).expect("prepare");
        let mut metadata: BackupMetadata =
            serde_json::from_slice(&prepared.metadata_bytes).expect("metadata");
        let whole: Index = checked_index(&prepared.index_bytes, &metadata).expect("index");
        let kept: IndexChecksums = checked_index(&prepared.index_bytes, &metadata).expect("index");
        let expected: Vec<(String, String)> = whole
            .entries
            .into_iter()
            .map(|e| (e.path, e.sha256))
            .collect();
        assert_eq!(kept.entries.0, expected);

        // A restore mode no loader knows, under a matching checksum.
        let text = String::from_utf8(prepared.index_bytes.clone()).expect("utf-8");
        let tampered = text.replacen("\"restore\": \"recreate\"", "\"restore\": 5", 1);
        assert_ne!(tampered, text);
        metadata.index_sha256 = sha256_hex(tampered.as_bytes());
        let loader = checked_index::<Index>(tampered.as_bytes(), &metadata);
        let verifier = checked_index::<IndexChecksums>(tampered.as_bytes(), &metadata);
        assert!(matches!(loader, Err(ArchiveError::Malformed { .. })));
        assert!(matches!(verifier, Err(ArchiveError::Malformed { .. })));
    }

    #[test]
    fn an_archive_reads_back_exactly_what_was_written() {
        let objects = objects();
        let bytes = encode(&objects, &input()).expect("encode");
        let archive = decode(&bytes, &no_identity()).expect("decode");
        assert_eq!(archive.metadata.entries, 3);
        assert_eq!(archive.metadata.cluster.kube_system_uid, "ks-uid");
        assert_eq!(archive.metadata.plan_digest, "abc");
        assert_eq!(archive.objects.len(), 3);
        for (stored, original) in archive.objects.iter().zip(&objects) {
            assert_eq!(stored.object, original.object);
            assert_eq!(stored.entry.restore, original.mode);
            assert_eq!(stored.entry.removed, original.removed);
        }
        let paths: Vec<&str> = archive
            .objects
            .iter()
            .map(|o| o.entry.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "resources/core/v1/Secret/kubesphere-system/sh.helm.release.v1.ks-core.v1.yaml",
                "resources/iam.kubesphere.io/v1beta1/User/_cluster/admin.yaml",
                "resources/core/v1/Namespace/_cluster/default.yaml",
            ]
        );
        assert!(archive.objects[1].entry.terminating);
        assert!(!archive.objects[0].entry.terminating);
    }

    #[test]
    fn the_streaming_verifier_agrees_with_decode_on_every_truncation_and_flip() {
        let bytes = encode(&objects(), &input()).expect("encode");
        assert_eq!(verify_stream(bytes.as_slice()).expect("verify"), 3);
        for len in (0..bytes.len()).step_by(5) {
            assert!(
                verify_stream(&bytes[..len]).is_err(),
                "a truncation to {len} of {} bytes was accepted",
                bytes.len()
            );
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert_eq!(
                verify_stream(damaged.as_slice()).is_ok(),
                decode(&damaged, &no_identity()).is_ok(),
                "flip at {i}"
            );
        }
        let empty = encode(&[], &MetadataInput::default()).expect("encode");
        assert_eq!(verify_stream(empty.as_slice()).expect("empty"), 0);
        assert!(matches!(
            verify_stream(&b"PK\x03\x04"[..]),
            Err(ArchiveError::NotAnArchive)
        ));
    }

    #[test]
    fn streaming_and_in_memory_encoding_write_the_same_archive() {
        let objects = objects();
        let prepared = prepare(&objects, &input()).expect("prepare");
        assert_eq!(prepared.entries(), 3);
        let streamed = prepared.write_to(&objects, Vec::new()).expect("write");
        let read = decode(&streamed, &no_identity()).expect("decode");
        let again =
            decode(&encode(&objects, &input()).expect("encode"), &no_identity()).expect("decode");
        // Equal but for the creation time in the metadata.
        assert_eq!(read.objects, again.objects);
        // Other objects than the prepared ones are refused, not written.
        let err = prepared
            .write_to(&objects[..2], Vec::new())
            .expect_err("fewer objects");
        assert!(matches!(err, ArchiveError::Encode { .. }), "{err}");
        let mut changed = objects.clone();
        changed[1].object["spec"]["email"] = json!("someone@else");
        let err = prepared
            .write_to(&changed, Vec::new())
            .expect_err("changed object");
        assert!(
            matches!(&err, ArchiveError::Encode { object, .. } if object.contains("User")),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode(&objects(), &input()).expect("encode");
        for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            assert!(
                decode(&bytes[..len], &no_identity()).is_err(),
                "a truncation to {len} of {} bytes was accepted",
                bytes.len()
            );
        }
    }

    #[test]
    fn no_flipped_byte_goes_unnoticed() {
        let bytes = encode(&objects(), &input()).expect("encode");
        let original = decode(&bytes, &no_identity()).expect("decode");
        let mut refused = 0;
        // gzip's header holds fields readers ignore (mtime, OS, extra flags):
        // start past it. A flip in deflate's padding bits changes nothing
        // decoded, so the property is: refused, or read back identical.
        for i in 10..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            match decode(&damaged, &no_identity()) {
                Err(_) => refused += 1,
                Ok(read) => {
                    assert_eq!(read.objects, original.objects, "flip at {i} went unnoticed")
                }
            }
        }
        assert!(
            refused >= bytes.len() - 20,
            "only {refused} of {} flips refused",
            bytes.len()
        );
    }

    /// Builds a tar.gz by hand so the checks behind gzip and tar are tested too.
    fn rebuild(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            tar.append_data(&mut header, path, data.as_slice())
                .expect("append");
        }
        tar.into_inner().expect("tar").finish().expect("gzip")
    }

    fn files_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut tar = tar::Archive::new(GzDecoder::new(bytes));
        tar.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read");
                (path, data)
            })
            .collect()
    }

    #[test]
    fn a_changed_entry_a_missing_entry_or_an_extra_file_is_refused_with_its_name() {
        let bytes = encode(&objects(), &input()).expect("encode");
        let files = files_of(&bytes);
        let as_refs = |files: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> { files.to_vec() };

        let mut changed = as_refs(&files);
        changed[2].1 = b"apiVersion: v1\nkind: Secret\n".to_vec();
        let owned: Vec<(&str, Vec<u8>)> = changed
            .iter()
            .map(|(p, d)| (p.as_str(), d.clone()))
            .collect();
        assert!(matches!(
            verify_stream(rebuild(&owned).as_slice()),
            Err(ArchiveError::Checksum { .. })
        ));
        let err = decode(&rebuild(&owned), &no_identity()).expect_err("changed");
        assert!(
            matches!(&err, ArchiveError::Checksum { path, .. } if path.contains("Secret")),
            "{err}"
        );

        let missing: Vec<(&str, Vec<u8>)> = files[..4]
            .iter()
            .map(|(p, d)| (p.as_str(), d.clone()))
            .collect();
        assert!(matches!(
            verify_stream(rebuild(&missing).as_slice()),
            Err(ArchiveError::MissingEntry { path }) if path.contains("default")
        ));
        let err = decode(&rebuild(&missing), &no_identity()).expect_err("missing");
        assert!(
            matches!(&err, ArchiveError::MissingEntry { path } if path.contains("default")),
            "{err}"
        );

        let mut extra: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
        extra.push(("resources/core/v1/Secret/x/y.yaml", b"{}".to_vec()));
        assert!(matches!(
            verify_stream(rebuild(&extra).as_slice()),
            Err(ArchiveError::Unlisted { .. })
        ));
        let err = decode(&rebuild(&extra), &no_identity()).expect_err("extra");
        assert!(matches!(err, ArchiveError::Unlisted { .. }), "{err}");

        let err = decode(b"PK\x03\x04 a zip", &no_identity()).expect_err("not ours");
        assert!(matches!(err, ArchiveError::NotAnArchive), "{err}");
    }

    #[test]
    fn an_encrypted_archive_needs_the_identity() {
        let bytes = encode(&objects(), &input()).expect("encode");
        let identity = age::x25519::Identity::generate();
        let recipients: Vec<Box<dyn age::Recipient + Send>> = vec![Box::new(identity.to_public())];
        let sealed = encrypt(&bytes, &recipients).expect("encrypt");
        assert!(is_encrypted(&sealed));
        // The plaintext (Secret data included) is not readable in the file.
        assert!(
            !sealed
                .windows(b"helm.sh/release.v1".len())
                .any(|w| w == b"helm.sh/release.v1")
        );
        let err = decode(&sealed, &no_identity()).expect_err("no identity");
        assert!(matches!(err, ArchiveError::Encrypted), "{err}");
        let other: Vec<Box<dyn age::Identity + Send + Sync>> =
            vec![Box::new(age::x25519::Identity::generate())];
        let err = decode(&sealed, &other).expect_err("wrong identity");
        assert!(matches!(err, ArchiveError::Decrypt(_)), "{err}");
        let right: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity)];
        let archive = decode(&sealed, &right).expect("decrypt");
        assert_eq!(archive.objects.len(), 3);
        let mut damaged = sealed.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 0x80;
        assert!(decode(&damaged, &right).is_err());
    }

    /// A tar header announcing `size` bytes for `path` (checksum set).
    fn tar_header(path: &str, size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path(path).expect("path");
        header.set_size(size);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    #[test]
    fn a_gigabyte_gzip_bomb_in_an_entry_stops_at_the_cap() {
        use crate::hostile_inputs::{gzip_bomb, peak_rss_bytes};
        const GIB: u64 = 1024 * 1024 * 1024;
        let path = "resources/core/v1/Secret/ns/bomb.yaml";
        // One entry of 1 GiB of zeros (its padding and the tar end marker
        // are zeros too), about 1 MiB compressed.
        let bomb = gzip_bomb(&tar_header(path, GIB), GIB + 1024 * 1024);
        assert!(bomb.len() < 2 * 1024 * 1024, "{} bytes", bomb.len());
        let err = decode(&bomb, &no_identity()).expect_err("too large");
        assert!(
            matches!(&err, ArchiveError::TooLarge { path: p, limit } if p == path && *limit == MAX_ENTRY_BYTES),
            "{err}"
        );
        if let Some(peak) = peak_rss_bytes() {
            assert!(peak < GIB / 2, "peak RSS {peak} bytes");
        }
    }

    #[test]
    fn deeply_nested_entries_are_malformed_not_a_stack_overflow() {
        for text in crate::hostile_inputs::nested_yaml(100_000) {
            assert!(from_yaml(&text).is_err(), "{} bytes accepted", text.len());
        }
        let deep_index = crate::hostile_inputs::nested_json_arrays(100_000);
        assert!(serde_json::from_str::<Index>(&deep_index).is_err());
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;
        use std::sync::LazyLock;

        static VALID: LazyLock<Vec<u8>> =
            LazyLock::new(|| encode(&objects(), &input()).expect("encode"));

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn on_arbitrary_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), gzip in any::<bool>()) {
                // Half the cases past the magic check, into gzip and tar.
                if gzip && bytes.len() >= 2 {
                    bytes[..2].copy_from_slice(GZIP_MAGIC);
                }
                prop_assert!(decode(&bytes, &no_identity()).is_err());
            }

            #[test]
            fn on_arbitrary_tar_inside_valid_gzip(tar in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                gz.write_all(&tar).expect("gzip");
                let _ = decode(&gz.finish().expect("gzip"), &no_identity());
            }

            #[test]
            fn on_a_valid_archive_cut_and_flipped(cut in 0.0f64..=1.0, flip in 0.0f64..1.0, bit in 0u8..8) {
                let mut bytes = VALID.clone();
                let at = ((bytes.len() as f64) * flip) as usize;
                bytes[at] ^= 1 << bit;
                bytes.truncate(((bytes.len() as f64) * cut) as usize);
                let _ = decode(&bytes, &no_identity());
            }

            #[test]
            fn on_a_changed_byte_inside_the_tar(flip in 0.0f64..1.0, value in any::<u8>()) {
                // Damage behind gzip's CRC: the tar and the checksums must catch it.
                let mut tar = Vec::new();
                GzDecoder::new(VALID.as_slice()).read_to_end(&mut tar).expect("gunzip");
                let at = ((tar.len() as f64) * flip) as usize;
                let changed = tar[at] != value;
                tar[at] = value;
                let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                gz.write_all(&tar).expect("gzip");
                let result = decode(&gz.finish().expect("gzip"), &no_identity());
                // Every object and index entry is checksummed: a change
                // there is refused, one in ignored tar fields is harmless.
                // metadata.json itself has no checksum (only gzip's CRC
                // guards it on disk), so it is not compared here.
                if let Ok(archive) = result {
                    prop_assert!(!changed || archive.objects == decode(&VALID, &no_identity()).expect("valid").objects,
                        "a change at {at} went unnoticed");
                }
            }
        }
    }
}
