//! `kubesweep plan`: discover the platform's footprint and print (and
//! optionally save) the removal plan. Read-only.

use std::io::Read as _;
use std::path::Path;

use crate::args::{ClusterArgs, Format, PlanFlags, PlanOutput, ProfileArgs};
use crate::exit::{CliError, Exit};
use crate::session;
use kubesweep::plan::{Plan, PlanFileError, PlanOptions};
use kubesweep::profile::Profile;
use kubesweep::render::{Detail, render_plan};

/// Runs `plan`.
pub async fn run(
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    flags: &PlanFlags,
    output: &PlanOutput,
    save: Option<&Path>,
    details: bool,
) -> Result<Exit, CliError> {
    let profile = session::load_profile(profile_args)?;
    let cluster = session::connect(cluster_args).await?;
    let plan = make_plan(&cluster, &profile, &flags.options()).await?;
    let (format, file) = match output {
        PlanOutput::Stdout(format) => (*format, None),
        PlanOutput::File(path) => (Format::Text, Some(path.as_path())),
    };
    for path in save.into_iter().chain(file) {
        save_plan(&plan, path)?;
        eprintln!(
            "plan saved to {} (sha256:{})",
            path.display(),
            plan.digest()
        );
    }
    print_plan(&plan, format, details)?;
    Ok(Exit::Ok)
}

/// Discovers and plans on a connected cluster.
pub async fn make_plan(
    cluster: &kubesweep::cluster::Cluster,
    profile: &Profile,
    options: &PlanOptions,
) -> Result<Plan, CliError> {
    let inventory = kubesweep::discover::discover(&cluster.client, profile, &cluster.identity)
        .await
        .map_err(discover_error)?;
    Ok(kubesweep::plan::plan(profile, &inventory, options))
}

/// Maps a failed discovery to its exit code: a refused read (403) is a
/// missing permission (exit 4), anything else a cluster error.
pub fn discover_error(e: kubesweep::discover::DiscoverError) -> CliError {
    let exit = if e.is_forbidden() {
        Exit::Forbidden
    } else {
        Exit::Cluster
    };
    CliError::new(exit, session::chain(&e))
}

/// Prints a plan in the chosen format on stdout.
pub fn print_plan(plan: &Plan, output: Format, details: bool) -> Result<(), CliError> {
    let text = match output {
        Format::Text => render_plan(
            plan,
            if details {
                Detail::Details
            } else {
                Detail::Summary
            },
        ),
        Format::Json => to_json(plan)? + "\n",
        Format::Yaml => serde_saphyr::to_string(plan).map_err(|e| {
            CliError::new(Exit::Internal, format!("failed to render the plan: {e}"))
        })?,
    };
    print!("{text}");
    Ok(())
}

/// The plan as JSON with its digest (see [`kubesweep::plan::to_plan_file`]):
/// `apply` refuses a file whose content no longer matches it.
fn to_json(plan: &Plan) -> Result<String, CliError> {
    kubesweep::plan::to_plan_file(plan)
        .map_err(|e| CliError::new(Exit::Internal, format!("failed to serialise the plan: {e}")))
}

/// Writes the plan as JSON: to a temporary file next to the target, then
/// renamed, so an interrupted write never leaves half a plan behind.
pub fn save_plan(plan: &Plan, path: &Path) -> Result<(), CliError> {
    let json = to_json(plan)?;
    write_durably(path, (json + "\n").as_bytes()).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("failed to write plan {}: {e}", path.display()),
        )
    })
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one, never a torn one: a temporary file synced before the rename, and the
/// directory synced after it (the rename is durable only then).
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a plan file, refusing anything that is not an unedited plan of this
/// schema (exit 5).
pub fn load_plan(path: &Path) -> Result<Plan, CliError> {
    let bad = |message: String| {
        CliError::new(
            Exit::BadInput,
            format!("invalid plan {}: {message}", path.display()),
        )
    };
    // Read at most one byte past the cap: a wrong file (a disk image) is
    // refused without being read whole.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(kubesweep::plan::MAX_PLAN_FILE_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| {
            CliError::new(
                Exit::BadInput,
                format!("failed to read plan {}: {e}", path.display()),
            )
        })?;
    kubesweep::plan::parse_plan_file(&text).map_err(|e| match e {
        // `file:line:column: message`, like a compiler.
        PlanFileError::Syntax { .. } => CliError::new(
            Exit::BadInput,
            format!("invalid plan {}:{e}", path.display()),
        ),
        other => bad(other.to_string()),
    })
}
