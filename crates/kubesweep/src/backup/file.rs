//! Backup files on disk: written so that a crash never leaves a half file
//! under the final name (temporary file in the target directory, fsync,
//! rename, fsync of the directory), private (mode 0600: it holds Secrets), and
//! read back and verified before the caller may mutate anything. Also loads
//! age recipients and identity files.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::archive::{self, Archive, ArchiveError};

/// Largest backup file read: the decompressed cap of an archive plus room
/// for gzip's and age's framing of incompressible data.
pub const MAX_BACKUP_FILE_BYTES: u64 = archive::MAX_ARCHIVE_BYTES + 64 * 1024 * 1024;

/// Where to write a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A directory; the file name is generated (time and cluster) and never
    /// replaces an existing file.
    Directory(PathBuf),
    /// Exactly this file (replaced if it exists, atomically).
    File(PathBuf),
}

/// A backup written, synced and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenBackup {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// Objects in it.
    pub objects: usize,
    /// Whether it is age-encrypted.
    pub encrypted: bool,
}

/// Why a backup file could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum BackupFileError {
    /// The target directory could not be created or used.
    #[error("cannot use backup directory {dir}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming failed.
    #[error("failed to write backup {path}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file already exists (directory mode never replaces a backup).
    #[error("backup {path} already exists")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes on disk differ from the bytes written.
    #[error(
        "backup {path} reads back differently from what was written (sha256 {expected}, found {found})"
    )]
    ReadBack {
        /// The file.
        path: PathBuf,
        /// Of the bytes written.
        expected: String,
        /// Of the bytes read.
        found: String,
    },
    /// The archive (as built, or as read) does not verify.
    #[error("backup {path} does not verify")]
    Archive {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ArchiveError,
    },
    /// An `--encrypt-to` value is not an age recipient.
    #[error("{value:?} is not an age recipient (age1...): {message}")]
    Recipient {
        /// The value given.
        value: String,
        /// Parser message.
        message: String,
    },
    /// An identity file is unreadable or holds no usable identity.
    #[error("cannot use age identity file {path}: {message}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Parses `age1...` recipients.
pub fn parse_recipients(
    values: &[String],
) -> Result<Vec<Box<dyn age::Recipient + Send>>, BackupFileError> {
    values
        .iter()
        .map(|v| {
            age::x25519::Recipient::from_str(v.trim())
                .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
                .map_err(|message| BackupFileError::Recipient {
                    value: v.clone(),
                    message: message.to_string(),
                })
        })
        .collect()
}

/// Loads the identities of an age identity file (as `age-keygen` writes).
pub fn load_identities(
    path: &Path,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, BackupFileError> {
    let identity_error = |message: String| BackupFileError::Identity {
        path: path.to_path_buf(),
        message,
    };
    let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
        .map_err(|e| identity_error(e.to_string()))?;
    let identities = file
        .into_identities()
        .map_err(|e| identity_error(e.to_string()))?;
    if identities.is_empty() {
        return Err(identity_error("no identity in the file".into()));
    }
    Ok(identities)
}

/// `name` in `dir`, or `<stem>-<n>.tar.gz[.age]` when it is taken: two runs
/// within the same second get the same time-stamped name. (The rename still
/// refuses to clobber, should another process take it meanwhile.)
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let (stem, ext) = match name.find(".tar.gz") {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let mut path = dir.join(name);
    let mut n = 2;
    while path.exists() && n < 1000 {
        path = dir.join(format!("{stem}-{n}{ext}"));
        n += 1;
    }
    path
}

/// Generated file name: `kubesweep-backup-<UTC time>-<cluster>.tar.gz[.age]`.
pub fn file_name(kube_system_uid: &str, encrypted: bool) -> String {
    let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let cluster: String = kube_system_uid.chars().take(8).collect();
    let cluster = if cluster.is_empty() {
        "cluster".to_owned()
    } else {
        cluster
    };
    let suffix = if encrypted { ".tar.gz.age" } else { ".tar.gz" };
    format!("kubesweep-backup-{time}-{cluster}{suffix}")
}

/// How this process's temporary backup files start: named by PID so that an
/// abort (a second Ctrl-C, which skips destructors) can remove exactly its
/// own, never another run's.
pub fn temp_prefix() -> String {
    format!(".kubesweep-backup-{}-", std::process::id())
}

/// Suffix of a temporary backup file.
pub const TEMP_SUFFIX: &str = ".partial";

/// Verifies `plain` (the archive as encoded), encrypts it when recipients are
/// given, writes it durably with mode 0600, and verifies what is on disk.
/// Returns only when the backup can be trusted.
pub fn write_backup(
    destination: &Destination,
    kube_system_uid: &str,
    plain: &[u8],
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<WrittenBackup, BackupFileError> {
    write_backup_with(
        destination,
        kube_system_uid,
        |out| out.write_all(plain).map_err(ArchiveError::Write),
        recipients,
    )
}

/// [`write_backup`] for an archive that `write` streams (see
/// [`archive::Prepared::write_to`]): the plain archive bytes go through a
/// verifier on their way to the file (encrypted first when recipients are
/// given), then the file is synced, renamed into place, read back and
/// verified again (its checksum; and the archive itself when it is not
/// encrypted). Nothing of the archive is held in memory, so a backup of
/// 50,000 objects costs what one object costs.
pub fn write_backup_with(
    destination: &Destination,
    kube_system_uid: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<(), ArchiveError>,
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<WrittenBackup, BackupFileError> {
    let encrypted = !recipients.is_empty();
    let (dir, path, replace) = match destination {
        Destination::Directory(dir) => {
            let name = file_name(kube_system_uid, encrypted);
            (dir.clone(), unused_path(dir, &name), false)
        }
        Destination::File(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (dir, path.clone(), true)
        }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| BackupFileError::Directory {
            dir: dir.clone(),
            source,
        })?;
    if !replace && path.exists() {
        return Err(BackupFileError::Exists { path });
    }
    let write_error = |source| BackupFileError::Write {
        path: path.clone(),
        source,
    };
    let archive_error = |source| match source {
        ArchiveError::Write(source) => BackupFileError::Write {
            path: path.clone(),
            source,
        },
        source => BackupFileError::Archive {
            path: path.clone(),
            source,
        },
    };
    // tempfile creates the file with mode 0600 and a random name in `dir`, so
    // the rename below stays on one file system and is atomic.
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .suffix(TEMP_SUFFIX)
        .tempfile_in(&dir)
        .map_err(|source| BackupFileError::Directory {
            dir: dir.clone(),
            source,
        })?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(write_error)?;

    // An encoder bug must stop us here, before any mutation, not at
    // restore time: the plain bytes are verified as they are written.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let verifier = std::thread::spawn(move || archive::verify_stream(ChannelReader::new(receiver)));
    let mut on_disk = Hashing::new(std::io::BufWriter::new(temp.as_file_mut()));
    let written = if encrypted {
        archive::encrypting(recipients, &mut on_disk).and_then(|mut sealed| {
            write(&mut Tee::new(&mut sealed, sender))?;
            sealed.finish().map_err(ArchiveError::Write).map(drop)
        })
    } else {
        write(&mut Tee::new(&mut on_disk, sender))
    };
    // The sender is gone with the tee: the verifier has seen the end.
    let verified = verifier.join().unwrap_or_else(|_| {
        Err(ArchiveError::Write(std::io::Error::other(
            "the archive verifier panicked",
        )))
    });
    written.map_err(archive_error)?;
    let objects = verified.map_err(|source| BackupFileError::Archive {
        path: path.clone(),
        source,
    })?;
    on_disk.flush().map_err(write_error)?;
    let (sha256, size) = on_disk.finish();
    temp.as_file().sync_all().map_err(write_error)?;
    if replace {
        temp.persist(&path).map_err(|e| write_error(e.error))?;
    } else {
        temp.persist_noclobber(&path)
            .map_err(|e| write_error(e.error))?;
    }
    // The rename is durable only once the directory entry is on disk.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BackupFileError::Directory {
            dir: dir.clone(),
            source,
        })?;

    // Read back in chunks: the same bytes, and (in clear) a valid archive.
    let read_error = |source| BackupFileError::Read {
        path: path.clone(),
        source,
    };
    let mut back = Hashing::new(File::open(&path).map_err(read_error)?);
    if !encrypted {
        archive::verify_stream(&mut back).map_err(|source| BackupFileError::Archive {
            path: path.clone(),
            source,
        })?;
    }
    std::io::copy(&mut back, &mut std::io::sink()).map_err(read_error)?;
    let (found, read) = back.finish();
    if found != sha256 || read != size {
        return Err(BackupFileError::ReadBack {
            path,
            expected: sha256,
            found,
        });
    }
    Ok(WrittenBackup {
        size,
        sha256: found,
        objects,
        encrypted,
        path,
    })
}

/// The sha256 and length of everything read or written through it.
struct Hashing<T> {
    inner: T,
    hasher: sha2::Sha256,
    len: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        use sha2::Digest;
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            len: 0,
        }
    }

    /// Hex sha256 and length of what went through.
    fn finish(self) -> (String, u64) {
        use sha2::Digest;
        (hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<T: Write> Write for Hashing<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: std::io::Read> std::io::Read for Hashing<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Writes through to `inner` and hands a copy of every chunk to the
/// verifier thread. When the verifier has stopped (it found an error, which
/// its result reports), the copies stop too.
struct Tee<W> {
    inner: W,
    copy: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl<W> Tee<W> {
    fn new(inner: W, copy: std::sync::mpsc::SyncSender<Vec<u8>>) -> Self {
        Self {
            inner,
            copy: Some(copy),
        }
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(copy) = &self.copy
            && copy.send(buf[..n].to_vec()).is_err()
        {
            self.copy = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The verifier's side of a [`Tee`]: the chunks as one stream, ending when
/// the tee is dropped.
struct ChannelReader {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(chunks: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            chunks,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads and fully verifies a backup file; `identity` is needed for an
/// encrypted one.
pub fn read_backup(path: &Path, identity: Option<&Path>) -> Result<Archive, BackupFileError> {
    let read_error = |source| BackupFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Neither gzip nor age makes data much larger: a file well over the
    // decompressed cap cannot be a backup this reader accepts, so it is
    // refused before being read into memory.
    let size = fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_BACKUP_FILE_BYTES {
        return Err(BackupFileError::Archive {
            path: path.to_path_buf(),
            source: ArchiveError::TooLarge {
                path: path.display().to_string(),
                limit: MAX_BACKUP_FILE_BYTES,
            },
        });
    }
    let bytes = fs::read(path).map_err(read_error)?;
    let identities = match identity {
        Some(file) => load_identities(file)?,
        None => Vec::new(),
    };
    archive::decode(&bytes, &identities).map_err(|source| BackupFileError::Archive {
        path: path.to_path_buf(),
        source,
    })
}

/// Hex sha256 of the file at `path`, read in chunks: the checksum `apply`
/// and `backup` print (and the audit record keeps) for the archive they
/// wrote. It is the archive's root of trust: inside it `metadata.json` holds
/// the index's checksum and the index every object's, but nothing inside can
/// vouch for `metadata.json` itself against a deliberate edit.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::archive::MetadataInput;
    use crate::backup::collect::BackupObject;
    use crate::backup::format::{RestoreMode, Source};
    use crate::resource::ResourceType;
    use serde_json::json;

    fn plain() -> Vec<u8> {
        let object = BackupObject {
            resource: ResourceType {
                group: String::new(),
                version: "v1".into(),
                kind: "Secret".into(),
                plural: "secrets".into(),
                namespaced: true,
            },
            object: json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n", "uid": "u"}, "data": {"k": "dg=="}}),
            operations: vec!["delete".into()],
            source: Source::NamespaceContent,
            mode: RestoreMode::Recreate,
            removed: None,
        };
        archive::encode(&[object], &MetadataInput::default()).expect("encode")
    }

    #[test]
    fn a_backup_is_private_complete_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("backups");
        let written = write_backup(
            &Destination::Directory(target.clone()),
            "0123456789",
            &plain(),
            &[],
        )
        .expect("write");
        let mode = fs::metadata(&written.path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(written.objects, 1);
        let name = written
            .path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("kubesweep-backup-") && name.ends_with("-01234567.tar.gz"),
            "{name}"
        );
        let files: Vec<_> = fs::read_dir(&target).expect("list").collect();
        assert_eq!(files.len(), 1, "only the backup itself is left");
        assert_eq!(
            read_backup(&written.path, None)
                .expect("read")
                .objects
                .len(),
            1
        );
    }

    #[test]
    fn an_unusable_directory_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        fs::write(&file, "x").expect("write");
        // Works as root too: a directory cannot be created below a file.
        let err = write_backup(
            &Destination::Directory(file.join("sub")),
            "u",
            &plain(),
            &[],
        )
        .expect_err("must fail");
        assert!(matches!(err, BackupFileError::Directory { .. }), "{err}");
    }

    #[test]
    fn a_damaged_build_is_never_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = plain();
        let n = bytes.len();
        bytes.truncate(n - 10);
        let err = write_backup(&Destination::Directory(dir.path().into()), "u", &bytes, &[])
            .expect_err("refused");
        assert!(matches!(err, BackupFileError::Archive { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn a_streamed_backup_that_fails_midway_leaves_nothing_and_a_good_one_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = plain();
        let err = write_backup_with(
            &Destination::Directory(dir.path().into()),
            "u",
            |out| {
                out.write_all(&bytes[..bytes.len() / 2])
                    .map_err(ArchiveError::Write)?;
                Err(ArchiveError::Write(std::io::Error::other("disk full")))
            },
            &[],
        )
        .expect_err("failed write");
        assert!(matches!(err, BackupFileError::Write { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);

        // Written in small pieces, as the archive writer does.
        let path = dir.path().join("b.tar.gz");
        let written = write_backup_with(
            &Destination::File(path.clone()),
            "u",
            |out| {
                for chunk in bytes.chunks(7) {
                    out.write_all(chunk).map_err(ArchiveError::Write)?;
                }
                Ok(())
            },
            &[],
        )
        .expect("write");
        assert_eq!(fs::read(&path).expect("read"), bytes);
        assert_eq!(written.size, bytes.len() as u64);
        assert_eq!(written.sha256, file_sha256(&path).expect("sha"));
        assert_eq!(written.objects, 1);
    }

    #[test]
    fn a_file_over_the_cap_is_refused_without_being_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge.tar.gz");
        // Sparse: no disk space, no time.
        File::create(&path)
            .and_then(|f| f.set_len(MAX_BACKUP_FILE_BYTES + 1))
            .expect("sparse file");
        let err = read_backup(&path, None).expect_err("too large");
        assert!(
            matches!(
                &err,
                BackupFileError::Archive {
                    source: ArchiveError::TooLarge { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_encrypted_backup_reads_back_with_its_identity_file_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = age::x25519::Identity::generate();
        let key_file = dir.path().join("key.txt");
        use age::secrecy::ExposeSecret;
        fs::write(
            &key_file,
            format!("# test key\n{}\n", identity.to_string().expose_secret()),
        )
        .expect("key");
        let recipients = parse_recipients(&[identity.to_public().to_string()]).expect("recipient");
        let path = dir.path().join("b.tar.gz.age");
        let written = write_backup(&Destination::File(path.clone()), "u", &plain(), &recipients)
            .expect("write");
        assert!(written.encrypted);
        let err = read_backup(&path, None).expect_err("needs identity");
        assert!(
            matches!(
                &err,
                BackupFileError::Archive {
                    source: ArchiveError::Encrypted,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            read_backup(&path, Some(&key_file))
                .expect("read")
                .objects
                .len(),
            1
        );
        assert!(parse_recipients(&["age1nope".into()]).is_err());
    }
}
