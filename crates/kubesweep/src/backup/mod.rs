//! Backups of everything a plan deletes or changes, taken before the first
//! mutation, and restore from them. `format` defines the archive layout;
//! `collect` (pure) picks the objects from plan and inventory; `content`
//! (cluster I/O) adds the content of namespaces being deleted; `archive`
//! encodes, encrypts and verifies bytes; `file` writes and reads them durably;
//! `take` ties these together for `apply` and `backup`; `redact` (pure)
//! leaves other clusters' credentials out of backups written in clear; `order` (pure)
//! decides the restore order and patches; `restore` (cluster I/O) runs it;
//! `stored` keeps an encrypted archive in the cluster for hook mode.

mod archive;
mod collect;
mod content;
mod file;
mod format;
mod order;
mod redact;
mod restore;
pub mod stored;
mod take;

pub use archive::{
    Archive, ArchiveError, MAX_ARCHIVE_BYTES, MAX_ENTRY_BYTES, MetadataInput, Prepared,
    StoredObject, decode, encode, encrypt, encrypting, is_encrypted, prepare, verify_stream,
};
pub use collect::{
    BackupObject, CollectError, deleted_namespaces, plan_objects, plan_objects_owned,
    skip_namespace_content,
};
pub use content::{ContentError, namespace_content};
pub use file::{
    BackupFileError, Destination, MAX_BACKUP_FILE_BYTES, TEMP_SUFFIX, WrittenBackup, file_name,
    file_sha256, load_identities, parse_recipients, read_backup, temp_prefix, write_backup,
    write_backup_with,
};
pub use format::{
    BackupMetadata, FORMAT_VERSION, INDEX_PATH, Index, IndexEntry, METADATA_PATH, RemovedMetadata,
    RestoreMode, Source, entry_path,
};
pub use order::{Stage, Wave, prepare_for_create, put_back_patch, remap_owner_references, waves};
pub use redact::redact_secret_fields;
pub use restore::{ItemReport, Outcome, RestoreError, RestoreOptions, RestoreReport, restore};
pub use take::{TakeError, take};
