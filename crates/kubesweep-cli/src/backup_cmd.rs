//! `kubesweep backup`: write an archive of everything a plan would change
//! without changing anything, or `backup inspect` an archive (list it and
//! verify every checksum). Also the backup step `apply` runs before its first
//! mutation.

use std::path::Path;
use std::time::Instant;

use crate::args::{BackupAction, BackupFlags, ClusterArgs, Format, PlanFlags, ProfileArgs};
use crate::exit::{CliError, Exit};
use crate::interrupt::Interrupt;
use crate::session;
use kubesweep::backup::{self, BackupFileError, Destination, WrittenBackup};
use kubesweep::cluster::Cluster;
use kubesweep::inventory::Inventory;
use kubesweep::plan::Plan;

/// Runs `backup` (or `backup inspect`).
pub async fn run(
    action: Option<&BackupAction>,
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    plan_flags: &PlanFlags,
    output: Option<&Path>,
    encrypt_to: &[String],
) -> Result<Exit, CliError> {
    if let Some(BackupAction::Inspect {
        archive,
        identity,
        sha256,
        output,
    }) = action
    {
        return inspect(archive, identity.as_deref(), sha256.as_deref(), *output);
    }
    if let Some(BackupAction::Fetch { run, output }) = action {
        return fetch(cluster_args, run, output).await;
    }
    let Some(output) = output else {
        return Err(CliError::new(
            Exit::Usage,
            "`backup` needs -o FILE (or `backup inspect FILE`)",
        ));
    };
    let recipients = recipients(encrypt_to)?;
    let profile = session::load_profile(profile_args)?;
    // A signal before the archive is written ends the process at once; while
    // it is written, the write is dropped whole with its temporary file, so
    // an interrupted `backup` never leaves a partial file or a half archive.
    let interrupt = Interrupt::install();
    let cluster = session::connect(cluster_args).await?;
    let inventory = kubesweep::discover::discover(&cluster.client, &profile, &cluster.identity)
        .await
        .map_err(|e| CliError::new(Exit::Cluster, session::chain(&e)))?;
    let plan = kubesweep::plan::plan(&profile, &inventory, &plan_flags.options());
    let directory = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    interrupt.writing(directory);
    eprintln!(
        "backup: writing what {} planned action(s) would change to {}",
        plan.actions().count(),
        output.display()
    );
    let written = interrupt
        .before_changes(write(
            &cluster,
            &plan,
            inventory,
            &Destination::File(output.to_path_buf()),
            &recipients,
        ))
        .await?;
    println!("{}", written.path.display());
    Ok(Exit::Ok)
}

fn recipients(values: &[String]) -> Result<Vec<Box<dyn age::Recipient + Send>>, CliError> {
    backup::parse_recipients(values).map_err(|e| CliError::new(Exit::Usage, session::chain(&e)))
}

/// `backup fetch RUN -o FILE`: the archive hook mode kept in the cluster,
/// reassembled, checked against its sha256 and written with mode 0600 to a
/// file that must not exist yet.
async fn fetch(cluster_args: &ClusterArgs, run: &str, output: &Path) -> Result<Exit, CliError> {
    use std::io::Write as _;
    let cluster = session::connect(cluster_args).await?;
    let (name, bytes) = backup::stored::fetch(&cluster.client, run)
        .await
        .map_err(|e| {
            let exit = match e {
                backup::stored::StoredError::Damaged { .. }
                | backup::stored::StoredError::NotFound { .. } => Exit::BadInput,
                _ => Exit::Cluster,
            };
            CliError::new(exit, session::chain(&e))
        })?;
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(output)?;
        file.write_all(&bytes)?;
        file.sync_all()
    };
    write().map_err(|e| {
        CliError::new(
            Exit::Backup,
            format!("cannot write {}: {e}", output.display()),
        )
    })?;
    eprintln!(
        "fetched {name} ({} bytes, sha256 {} as stored) to {}",
        bytes.len(),
        backup::file_sha256(output).unwrap_or_default(),
        output.display()
    );
    Ok(Exit::Ok)
}

/// Hook mode: keeps an encrypted archive in the cluster, since the pod's
/// files go with the Job. An archive in clear text is not stored (it holds
/// Secrets): the summary says that nothing survives the pod.
pub async fn keep_in_cluster(cluster: &Cluster, written: &WrittenBackup) -> Result<(), CliError> {
    if !written.encrypted {
        crate::hook::summarise(format!(
            "backup: NOT kept: {} is in the pod's filesystem and goes with it; it is not encrypted, so it is not stored in the cluster (set a recipient: --encrypt-to, chart value backup.recipient)",
            written.path.display()
        ));
        return Ok(());
    }
    let fail = |why: String| {
        CliError::new(
            Exit::Backup,
            format!("backup could not be kept in the cluster, nothing was changed: {why}"),
        )
    };
    let bytes = std::fs::read(&written.path)
        .map_err(|e| fail(format!("read {}: {e}", written.path.display())))?;
    let name = written
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (run, secrets) = backup::stored::store(&cluster.client, &name, &bytes)
        .await
        .map_err(|e| fail(session::chain(&e)))?;
    let line = format!(
        "backup: kept in the cluster, age-encrypted, sha256 {}: namespace {}, {} Secret(s) labelled {}={run}; fetch with `kubesweep backup fetch {run} -o {name}`",
        written.sha256,
        backup::stored::BACKUP_NAMESPACE,
        secrets.len(),
        backup::stored::RUN_LABEL,
    );
    crate::hook::status_line(&line);
    crate::hook::summarise(line);
    Ok(())
}

/// The backup step of `apply`, between confirmation and the first mutation.
/// Returns `None` only when `--no-backup` was given; any failure stops apply
/// with exit 8 before anything changed.
pub async fn before_apply(
    cluster: &Cluster,
    plan: &Plan,
    inventory: Inventory,
    flags: &BackupFlags,
) -> Result<Option<WrittenBackup>, CliError> {
    if flags.no_backup {
        crate::hook::status_line(
            "backup: skipped (--no-backup); there will be nothing to restore from",
        );
        crate::hook::summarise("backup: none (--no-backup)");
        return Ok(None);
    }
    let recipients = recipients(&flags.encrypt_to)?;
    let destination = Destination::Directory(flags.backup_dir.clone());
    write(cluster, plan, inventory, &destination, &recipients)
        .await
        .map(Some)
}

async fn write(
    cluster: &Cluster,
    plan: &Plan,
    inventory: Inventory,
    destination: &Destination,
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<WrittenBackup, CliError> {
    let start = Instant::now();
    let written = backup::take(&cluster.client, plan, inventory, destination, recipients)
        .await
        .map_err(|e| {
            CliError::new(
                Exit::Backup,
                format!("backup failed, nothing was changed: {}", session::chain(&e)),
            )
        })?;
    crate::hook::status_line(format!(
        "backup: {} objects, {} bytes{}, written and verified in {:.2}s: {} (sha256 {})",
        written.objects,
        written.size,
        if written.encrypted {
            ", age-encrypted"
        } else {
            ""
        },
        start.elapsed().as_secs_f64(),
        written.path.display(),
        written.sha256
    ));
    Ok(written)
}

/// Reads and verifies an archive for `inspect` and `restore`; every problem
/// with the file is bad input (exit 5).
pub fn read(
    path: &Path,
    identity: Option<&Path>,
    expected_sha256: Option<&str>,
) -> Result<backup::Archive, CliError> {
    if let Some(expected) = expected_sha256 {
        check_sha256(path, expected)?;
    }
    backup::read_backup(path, identity).map_err(|e: BackupFileError| {
        CliError::new(
            Exit::BadInput,
            format!("refusing backup {}: {}", path.display(), session::chain(&e)),
        )
    })
}

fn inspect(
    path: &Path,
    identity: Option<&Path>,
    sha256: Option<&str>,
    output: Format,
) -> Result<Exit, CliError> {
    let archive = read(path, identity, sha256)?;
    match output {
        Format::Json | Format::Yaml => {
            let entries: Vec<&backup::IndexEntry> =
                archive.objects.iter().map(|o| &o.entry).collect();
            let doc = serde_json::json!({
                "metadata": archive.metadata,
                "entries": entries,
                "verified": true,
            });
            let text = if output == Format::Json {
                serde_json::to_string_pretty(&doc)
                    .map_err(|e| CliError::new(Exit::Internal, format!("failed to render: {e}")))?
            } else {
                serde_saphyr::to_string(&doc)
                    .map_err(|e| CliError::new(Exit::Internal, format!("failed to render: {e}")))?
            };
            println!("{text}");
        }
        Format::Text => print!("{}", render(&archive)),
    }
    Ok(Exit::Ok)
}

fn render(archive: &backup::Archive) -> String {
    let m = &archive.metadata;
    let mut out = format!(
        "Backup of {} (kube-system {}), profile {}, kubesweep {}, {}\nPlan digest: sha256:{}\n\n",
        m.cluster.server,
        m.cluster.kube_system_uid,
        m.profile,
        m.kubesweep_version,
        m.created_at,
        m.plan_digest
    );
    out.push_str(&format!(
        "{:<9} {:<60} {:>7}  OPERATIONS\n",
        "RESTORE", "OBJECT", "BYTES"
    ));
    for o in &archive.objects {
        let e = &o.entry;
        let mode = match e.restore {
            backup::RestoreMode::Recreate => "recreate",
            backup::RestoreMode::PutBack => "put-back",
        };
        let mut ops = e.operations.join(", ");
        if e.terminating {
            ops.push_str(" (was terminating)");
        }
        out.push_str(&format!(
            "{mode:<9} {:<60} {:>7}  {ops}\n",
            e.display_name(),
            e.size
        ));
    }
    for i in &m.incomplete {
        out.push_str(&format!("not readable when backed up: {i}\n"));
    }
    out.push_str(&format!(
        "\n{} objects; every checksum verified\n",
        archive.objects.len()
    ));
    out
}

/// Refuses `path` unless its sha256 is `expected` (hex, `sha256:` allowed).
fn check_sha256(path: &Path, expected: &str) -> Result<(), CliError> {
    let refuse = |why: String| {
        CliError::new(
            Exit::BadInput,
            format!("refusing backup {}: {why}", path.display()),
        )
    };
    let expected = expected
        .trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::new(
            Exit::Usage,
            format!("--sha256 {expected:?} is not a sha256 (64 hex digits)"),
        ));
    }
    let found = backup::file_sha256(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if found != expected {
        return Err(refuse(format!(
            "its sha256 is {found}, not {expected} as given with --sha256: the file changed after it was written"
        )));
    }
    Ok(())
}
