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

/// The files of a tar stream: path to contents (directories: empty) and mode.
fn tar_files(bytes: &[u8]) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    let mut files = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").display().to_string();
        let mode = entry.header().mode().expect("mode");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read entry");
        files.insert(path.trim_end_matches('/').to_string(), (data, mode));
    }
    files
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).expect("gunzip");
    out
}

/// `scripts/dist` (with the test build's binary, stripped to keep it quick):
/// the krew archive holds what the manifest names, the manifest carries the
/// archive's sha256, and the OCI image's index, manifest, config and layer
/// are linked by their digests, run the binary as non-root, and hold it
/// byte for byte.
#[test]
fn dist_packs_a_krew_archive_its_manifest_and_an_oci_image() {
    let scratch = tempfile::tempdir().expect("scratch");
    let binary = scratch.path().join("kubesweep");
    std::fs::copy(env!("CARGO_BIN_EXE_kubesweep"), &binary).expect("copy the binary");
    let strip = run(Path::new("strip"), &[utf8(&binary)]);
    assert!(strip.status.success(), "{}", explain(&strip));
    let out = scratch.path().join("dist");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dist = run(
        &repo.join("scripts/dist"),
        &["--binary", utf8(&binary), "--out", utf8(&out)],
    );
    assert!(dist.status.success(), "{}", explain(&dist));
    let binary_bytes = std::fs::read(&binary).expect("binary");

    // The krew manifest and its archive.
    let manifest: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(out.join("sweep.yaml")).expect("sweep.yaml"),
    )
    .expect("the krew manifest is YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "sweep");
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["spec"]["version"], version.as_str());
    let platform = &manifest["spec"]["platforms"][0];
    assert_eq!(platform["bin"], "kubectl-sweep");
    let uri = platform["uri"].as_str().expect("uri");
    let archive_name = uri.rsplit('/').next().expect("file name");
    assert_eq!(
        archive_name,
        format!("kubectl-sweep_{version}_linux_amd64.tar.gz")
    );
    let archive = std::fs::read(out.join(archive_name)).expect("the krew archive");
    assert_eq!(platform["sha256"], sha256(&archive).as_str());
    let files = tar_files(&gunzip(&archive));
    for from in platform["files"].as_array().expect("files") {
        let from = from["from"].as_str().expect("from");
        assert!(files.contains_key(from), "{from} is not in {archive_name}");
    }
    assert_eq!(files["kubectl-sweep"].0, binary_bytes);
    assert_eq!(files["kubectl-sweep"].1 & 0o111, 0o111, "not executable");
    assert!(
        String::from_utf8_lossy(&files["completions/kubectl-sweep.bash"].0)
            .contains("kubectl-sweep")
    );

    // The OCI image layout.
    let layout = tar_files(&std::fs::read(out.join("kubesweep-image.oci.tar")).expect("image"));
    let blob = |digest: &str| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let data = layout[&format!("blobs/sha256/{hex}")].0.clone();
        assert_eq!(
            sha256(&data),
            hex,
            "blob {digest} does not match its digest"
        );
        data
    };
    let json = |bytes: &[u8]| -> serde_json::Value { serde_json::from_slice(bytes).expect("JSON") };
    assert_eq!(json(&layout["oci-layout"].0)["imageLayoutVersion"], "1.0.0");
    let index = json(&layout["index.json"].0);
    let descriptor = &index["manifests"][0];
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"],
        format!("docker.io/library/kubesweep:{}", env!("CARGO_PKG_VERSION")).as_str()
    );
    let image_manifest = json(&blob(descriptor["digest"].as_str().expect("digest")));
    let config = json(&blob(
        image_manifest["config"]["digest"].as_str().expect("config"),
    ));
    assert_eq!(config["config"]["User"], "65532:65532", "runs as non-root");
    assert_eq!(config["config"]["Entrypoint"][0], "/kubesweep");
    let layer_descriptor = &image_manifest["layers"][0];
    let layer_gz = blob(layer_descriptor["digest"].as_str().expect("layer"));
    assert_eq!(layer_descriptor["size"], layer_gz.len());
    let layer_tar = gunzip(&layer_gz);
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256(&layer_tar)).as_str()
    );
    let layer = tar_files(&layer_tar);
    assert_eq!(layer["kubesweep"].0, binary_bytes);
    assert_eq!(layer["kubesweep"].1, 0o755);
    assert_eq!(layer["tmp"].1, 0o1777, "a writable /tmp for backups");
}
