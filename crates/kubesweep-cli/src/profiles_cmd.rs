//! `kubesweep profiles`: list the built-in profiles, print one, or print the
//! least-privilege ClusterRole one needs (see `kubesweep::rbac`).

use crate::args::ProfilesAction;
use crate::exit::{CliError, Exit};
use kubesweep::profile::Profile;

/// Runs `profiles [show NAME]`.
pub fn run(action: Option<ProfilesAction>) -> Result<Exit, CliError> {
    match action {
        None => {
            for name in Profile::builtin_names() {
                let profile = Profile::builtin(name)
                    .map_err(|e| CliError::new(Exit::Internal, crate::session::chain(&e)))?;
                println!("{name}\t{}", profile.description);
            }
        }
        Some(ProfilesAction::Show { name }) => {
            let profile = Profile::builtin(&name)
                .map_err(|e| CliError::new(Exit::Usage, crate::session::chain(&e)))?;
            let yaml = serde_saphyr::to_string(&profile).map_err(|e| {
                CliError::new(Exit::Internal, format!("failed to render profile: {e}"))
            })?;
            print!("{yaml}");
        }
        Some(ProfilesAction::Rbac { name }) => {
            let profile = Profile::builtin(&name)
                .map_err(|e| CliError::new(Exit::Usage, crate::session::chain(&e)))?;
            print!("{}", kubesweep::rbac::render_cluster_role(&profile));
        }
    }
    Ok(Exit::Ok)
}
