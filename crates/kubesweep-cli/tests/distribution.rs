//! The binary as it is distributed (issue 11, distribution part): run as the
//! kubectl plugin `kubectl-sweep` (by the real kubectl, found on `PATH`), its
//! help says `kubectl sweep`; shell completions and the manual page are
//! generated from the command-line definition. No cluster needed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// A directory holding the binary under the plugin's name.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("scratch");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_kubesweep"),
        dir.path().join("kubectl-sweep"),
    )
    .expect("link kubectl-sweep");
    dir
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn as_kubectl_sweep_the_help_says_kubectl_sweep() {
    let dir = plugin_dir();
    let plugin = dir.path().join("kubectl-sweep");
    let out = run(&plugin, &["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(
        stdout(&out).contains("Usage: kubectl sweep [OPTIONS] <COMMAND>"),
        "{}",
        explain(&out)
    );
    let out = run(&plugin, &["apply", "--help"]);
    assert!(
        stdout(&out).contains("Usage: kubectl sweep apply"),
        "{}",
        explain(&out)
    );
    // A usage error names the plugin too.
    let out = run(&plugin, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(stderr(&out).contains("kubectl sweep"), "{}", explain(&out));

    // Under its own name nothing changes.
    let out = run(Path::new(env!("CARGO_BIN_EXE_kubesweep")), &["--help"]);
    assert!(
        stdout(&out).contains("Usage: kubesweep [OPTIONS] <COMMAND>"),
        "{}",
        explain(&out)
    );
}

#[test]
fn kubectl_finds_and_runs_the_plugin() {
    let dir = plugin_dir();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .args(["sweep", "profiles"])
        .env("PATH", &path)
        .output()
        .expect("kubectl is on the machine");
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(stdout(&out).starts_with("kubesphere"), "{}", explain(&out));
    let out = Command::new("kubectl")
        .args(["sweep", "--help"])
        .env("PATH", &path)
        .output()
        .expect("kubectl");
    assert!(
        stdout(&out).contains("Usage: kubectl sweep"),
        "{}",
        explain(&out)
    );
}

#[test]
fn completions_cover_every_subcommand_and_flag_in_each_shell() {
    let bin = Path::new(env!("CARGO_BIN_EXE_kubesweep"));
    for (shell, marker) in [
        ("bash", "complete -F _kubesweep"),
        ("zsh", "#compdef kubesweep"),
        ("fish", "complete -c kubesweep"),
    ] {
        let out = run(bin, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for word in ["apply", "restore", "max-in-flight", "stop-controllers"] {
            assert!(text.contains(word), "{shell} completions miss {word}");
        }
    }
    let out = run(bin, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
}

#[test]
fn the_manual_page_is_roff_with_every_subcommand() {
    let out = run(Path::new(env!("CARGO_BIN_EXE_kubesweep")), &["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let text = stdout(&out);
    assert!(text.contains(".TH kubesweep 1"), "{text}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        assert!(text.contains(section), "no {section}");
    }
    for sub in [
        "kubesweep\\-plan",
        "kubesweep\\-apply",
        "kubesweep\\-restore",
    ] {
        assert!(text.contains(sub), "the manual page misses {sub}");
    }
}
