//! Command-line arguments as parsed by clap: raw flags only. Validation into
//! options the library understands happens in the command modules.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Uninstall a Kubernetes platform completely, safely and fast.
///
/// kubesweep discovers what a platform (KubeSphere first) left in a cluster by
/// proven ownership, shows a reviewable plan, and removes it phase by phase
/// through the API, touching nothing else; then verifies that nothing is left.
#[derive(Debug, Parser)]
#[command(name = "kubesweep", version, about, long_about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// More logging (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The name of the kubectl plugin binary: installed under this name (krew
/// does that), kubesweep runs as `kubectl sweep`.
pub const PLUGIN_NAME: &str = "kubectl-sweep";

/// The name this process was started as (`argv[0]`'s file name, without
/// `.exe`).
pub fn invoked_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "kubesweep".to_string())
}

/// The command-line definition for a process invoked as `invoked`: as the
/// kubectl plugin, usage lines and help say `kubectl sweep`.
pub fn command(invoked: &str) -> clap::Command {
    use clap::CommandFactory;
    let command = Cli::command();
    if invoked == PLUGIN_NAME {
        command
            .name(PLUGIN_NAME)
            .bin_name("kubectl sweep")
            .display_name("kubectl sweep")
    } else {
        command
    }
}

/// Cluster connection flags, spelled as kubectl spells them.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables.
    Text,
    /// JSON with a stable schema.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Where `plan -o` sends the plan: a format on stdout, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanOutput {
    /// Print in this format.
    Stdout(Format),
    /// Save as JSON to this file (and print the text summary).
    File(PathBuf),
}

impl std::str::FromStr for PlanOutput {
    type Err = String;

    /// A known format name wins; anything else is taken as a file path, so
    /// both `-o json` and `-o plan.json` read naturally.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match Format::from_str(value, true) {
            Ok(format) => Ok(PlanOutput::Stdout(format)),
            Err(_) if value.is_empty() => Err("empty output".into()),
            Err(_) => Ok(PlanOutput::File(PathBuf::from(value))),
        }
    }
}

/// Which footprint to look for.
#[derive(Debug, Args, Clone)]
pub struct ProfileArgs {
    /// Built-in profile to use (see `kubesweep profiles`).
    #[arg(long, default_value = "kubesphere")]
    pub profile: String,
    /// Load the profile from this YAML file instead of a built-in one.
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    pub profile_file: Option<PathBuf>,
}

/// Flags that change what is planned.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanFlags {
    /// Also remove shared CRDs (e.g. applications.app.k8s.io) when no foreign object uses them.
    #[arg(long)]
    pub include_shared_crds: bool,
    /// Never plan the last-resort `/finalize` of a stuck platform namespace.
    #[arg(long)]
    pub no_finalize_stuck_namespaces: bool,
    /// Keep this platform namespace (clean it instead of deleting it). Repeatable.
    #[arg(long = "keep-namespace", value_name = "NAME")]
    pub keep_namespaces: Vec<String>,
    /// Keep the platform's extension releases installed: their objects, CRDs and
    /// namespaces stay, and their release records are rewritten so that Helm can
    /// still upgrade, roll back and uninstall them once the platform's kinds are gone.
    #[arg(long)]
    pub keep_extensions: bool,
    /// Keep platform namespaces that hold PersistentVolumeClaims (and the claims
    /// of Helm releases): only the platform's objects and metadata are removed.
    #[arg(long)]
    pub keep_data: bool,
}

impl PlanFlags {
    /// The library's planning options.
    pub fn options(&self) -> kubesweep::plan::PlanOptions {
        kubesweep::plan::PlanOptions {
            include_shared_crds: self.include_shared_crds,
            finalize_stuck_namespaces: !self.no_finalize_stuck_namespaces,
            keep_namespaces: self.keep_namespaces.clone(),
            keep_extensions: self.keep_extensions,
            keep_data: self.keep_data,
            leave_uninstalling_records: false,
        }
    }
}

/// Flags of `apply`.
#[derive(Debug, Args, Clone)]
pub struct ApplyFlags {
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub max_in_flight: u16,
    /// How long to wait, per phase, for deletions to complete.
    #[arg(long = "wait-timeout", value_name = "SECONDS", default_value_t = 180)]
    pub wait_timeout_secs: u64,
    /// Who empties the deleted platform namespaces: `fast` (kubesweep deletes
    /// their content with UID preconditions, proves them empty and finalizes
    /// them; a namespace where the proof cannot be had is left to the
    /// controller) or `controller` (wait for the namespace controller).
    #[arg(long, value_enum, default_value_t = NamespaceWait::Fast)]
    pub namespace_wait: NamespaceWait,
    /// Blast-radius guard: a plan with more actions needs --allow-large.
    #[arg(long, default_value_t = 2000)]
    pub max_actions: usize,
    /// Apply a plan larger than --max-actions.
    #[arg(long)]
    pub allow_large: bool,
    /// Scale running platform controllers to zero before applying.
    #[arg(long)]
    pub stop_controllers: bool,
    /// Apply even though platform controllers are running.
    #[arg(long)]
    pub force: bool,
    /// Run later phases even after a phase had failures (never after failed
    /// cleaning of kept namespaces: that would risk user data).
    #[arg(long)]
    pub keep_going: bool,
    /// How long a request waits for an unreachable API server (refused or
    /// broken connections, as during a restart) before it fails.
    #[arg(
        long = "api-outage-timeout",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub api_outage_timeout_secs: u64,
    /// Run as a Helm post-delete hook Job: in-cluster configuration only
    /// (the pod's service account), no prompt (implies --yes), JSON log
    /// lines on stderr, a summary in the termination message file, and the
    /// records of the release Helm is uninstalling left for Helm to purge.
    #[arg(long, conflicts_with_all = ["kubeconfig", "context", "plan_file"])]
    pub hook: bool,
    /// Where --hook writes its summary (at most 4096 bytes, the kubelet's limit).
    #[arg(
        long,
        value_name = "FILE",
        env = "KUBESWEEP_TERMINATION_MESSAGE_PATH",
        default_value = "/dev/termination-log"
    )]
    pub termination_message_path: PathBuf,
    #[command(flatten)]
    pub backup: BackupFlags,
}

/// The fleet: a KubeSphere host and its member clusters.
#[derive(Debug, Args, Clone, Default)]
pub struct FleetArgs {
    /// The whole fleet: the members the host's clusters.cluster.kubesphere.io
    /// objects name (their kubeconfigs are read from there and kept in memory
    /// only), then the host (--kubeconfig/--context).
    #[arg(long)]
    pub members: bool,
    /// With --members: go on without members that cannot be reached directly
    /// (proxy connection, unreachable, unusable kubeconfig); the report names
    /// what is left on each and how to finish it. Without it, an unreachable
    /// member stops the run before any change on any cluster.
    #[arg(long, requires = "members")]
    pub skip_unreachable: bool,
    /// With --members: members connected, planned and applied at once at most.
    #[arg(long, requires = "members", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub max_member_concurrency: u8,
}

/// Where `apply` writes its backup before the first change.
#[derive(Debug, Args, Clone)]
pub struct BackupFlags {
    /// Directory for the backup archive written before the first change.
    #[arg(long, value_name = "DIR", default_value = "kubesweep-backups")]
    pub backup_dir: PathBuf,
    /// Skip the backup (nothing to restore from afterwards).
    #[arg(long, conflicts_with = "backup_dir")]
    pub no_backup: bool,
    /// Encrypt the backup to this age recipient (age1...). Repeatable. With
    /// --hook, the encrypted archive is also kept in the cluster (namespace
    /// kubesweep-backups; `kubesweep backup fetch RUN`).
    #[arg(
        long,
        value_name = "RECIPIENT",
        conflicts_with = "no_backup",
        env = "KUBESWEEP_BACKUP_RECIPIENT"
    )]
    pub encrypt_to: Vec<String>,
}

/// Log format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (progress bars on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Discover the platform's footprint and print the removal plan (changes nothing).
    Plan {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        /// `text`, `json` or `yaml` on stdout; or a file name (e.g. `plan.json`)
        /// to save the plan there as JSON and print the summary.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT|FILE",
            default_value = "text"
        )]
        output: PlanOutput,
        /// Write the plan to this file (JSON) as well.
        #[arg(long = "save", value_name = "FILE")]
        save: Option<PathBuf>,
        /// List every object with its action and reason, not only counts.
        #[arg(long)]
        details: bool,
        #[command(flatten)]
        flags: PlanFlags,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Execute a plan: discover and plan now, or run a saved plan file.
    Apply {
        /// A plan saved with `kubesweep plan --save FILE`; without it, plan now.
        plan_file: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        plan_flags: PlanFlags,
        #[command(flatten)]
        flags: ApplyFlags,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Check that nothing of the platform is left; exit 1 listing leftovers.
    Verify {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
        #[command(flatten)]
        flags: PlanFlags,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Write a backup archive of everything a plan would change (changes
    /// nothing), or inspect one.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        /// `inspect FILE` lists an archive and verifies its checksums.
        #[command(subcommand)]
        action: Option<BackupAction>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        plan_flags: PlanFlags,
        /// Archive to write (`.tar.gz`, or `.tar.gz.age` when encrypted).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Encrypt to this age recipient (age1...). Repeatable.
        #[arg(long, value_name = "RECIPIENT")]
        encrypt_to: Vec<String>,
    },
    /// Recreate objects from a backup archive and put back removed metadata.
    Restore {
        /// The archive written by `apply` or `backup`.
        archive: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Show what would be restored without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Replace objects that exist with the archived version.
        #[arg(long)]
        overwrite: bool,
        /// Restore a backup taken on another cluster (refused without it,
        /// with or without --overwrite).
        #[arg(long)]
        to_other_cluster: bool,
        /// age identity file, for an encrypted archive.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// The archive's sha256 as `apply`/`backup` printed it (and the
        /// audit record keeps): refused when the file differs.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// List the built-in profiles, or print one.
    Profiles {
        /// `show NAME` prints a profile.
        #[command(subcommand)]
        action: Option<ProfilesAction>,
    },
    /// Print a shell completion script, e.g. `kubesweep completions bash >
    /// /etc/bash_completion.d/kubesweep`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `kubesweep man > kubesweep.1`.
    Man,
}

/// `kubesweep backup` actions.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// List an archive's contents and verify every checksum (exit 5 when damaged).
    Inspect {
        /// The archive.
        archive: PathBuf,
        /// age identity file, for an encrypted archive.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// The archive's sha256 as `apply`/`backup` printed it: refused
        /// when the file differs.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
    },
    /// Fetch an encrypted archive `apply --hook` kept in the cluster
    /// (namespace kubesweep-backups), reassemble it and check its sha256.
    Fetch {
        /// The run, as the hook's summary names it (e.g. 20261130t081514z-a8c11f68).
        run: String,
        /// File to write (must not exist; mode 0600).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

/// `kubesweep profiles` actions.
#[derive(Debug, Subcommand)]
pub enum ProfilesAction {
    /// Print a built-in profile as YAML.
    Show {
        /// Profile name.
        name: String,
    },
    /// Print the least-privilege ClusterRole (YAML) a built-in profile needs
    /// to plan, back up, apply and verify: what the Helm hook chart ships.
    Rbac {
        /// Profile name.
        name: String,
    },
}

impl Command {
    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Plan { .. } => "plan",
            Command::Apply { .. } => "apply",
            Command::Verify { .. } => "verify",
            Command::Backup { .. } => "backup",
            Command::Restore { .. } => "restore",
            Command::Profiles { .. } => "profiles",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}

/// Who empties and finalizes the platform namespaces `apply` deletes.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum NamespaceWait {
    /// kubesweep, at the API server's speed, where it can prove them empty.
    #[default]
    Fast,
    /// The namespace controller, at the controller manager's request rate.
    Controller,
}
