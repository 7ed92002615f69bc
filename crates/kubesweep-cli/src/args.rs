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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Discover the platform's footprint and print the removal plan (changes nothing).
    Plan {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        /// Output format; `json` is the plan file `apply` accepts.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
        /// Write the plan to this file (JSON) as well.
        #[arg(long = "save", value_name = "FILE")]
        save: Option<PathBuf>,
        /// List every object with its action and reason, not only counts.
        #[arg(long)]
        details: bool,
    },
    /// Execute a plan: discover and plan now, or run a saved plan file.
    Apply {
        /// A plan saved with `kubesweep plan --save FILE`; without it, plan now.
        plan_file: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
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
    },
    /// Write a backup archive of everything a plan would change.
    Backup {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Archive to write.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Recreate objects from a backup archive.
    Restore {
        /// The archive written by `apply` or `backup`.
        archive: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Show what would be created without creating it.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the built-in profiles, or print one.
    Profiles {
        /// `show NAME` prints a profile.
        #[command(subcommand)]
        action: Option<ProfilesAction>,
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
        }
    }
}
