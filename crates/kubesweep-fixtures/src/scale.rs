//! How many objects a seed creates: named presets and explicit numbers, parsed from `--scale`.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Size of the seeded footprint.
///
/// The fixed part (CRDs, system namespaces, webhooks, the extension, decoys) is always seeded once;
/// the scale multiplies the tenant part: workspaces, their projects and the objects in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scale {
    /// User workspaces (besides `system-workspace`).
    pub workspaces: usize,
    /// Project namespaces per workspace.
    pub projects_per_workspace: usize,
    /// Objects per kind: users per workspace, roles and bindings per workspace and project, and
    /// ConfigMaps, Secrets and ServiceAccounts per project. Deployments stay at one per project
    /// because their controller writes their status, and the seed waits for that to settle.
    pub objects_per_kind: usize,
}

impl Scale {
    /// The default: one workspace, two projects, two objects per kind (a few hundred objects).
    pub const SMALL: Scale = Scale {
        workspaces: 1,
        projects_per_workspace: 2,
        objects_per_kind: 2,
    };
    /// About 2,000 objects.
    pub const MEDIUM: Scale = Scale {
        workspaces: 5,
        projects_per_workspace: 4,
        objects_per_kind: 20,
    };
    /// About 10,000 objects.
    pub const LARGE: Scale = Scale {
        workspaces: 10,
        projects_per_workspace: 10,
        objects_per_kind: 25,
    };
}

impl Default for Scale {
    fn default() -> Self {
        Scale::SMALL
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workspaces={},projects={},objects={}",
            self.workspaces, self.projects_per_workspace, self.objects_per_kind
        )
    }
}

impl FromStr for Scale {
    type Err = Error;

    /// `small`, `medium`, `large`, or `workspaces=W,projects=P,objects=O` (any subset, the rest
    /// from `small`), or the short form `WxPxO`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| Error::InvalidOption(format!("scale {s:?}: {why}"));
        let number = |v: &str| v.trim().parse::<usize>().map_err(|_| bad("not a number"));
        match s.trim() {
            "small" => return Ok(Scale::SMALL),
            "medium" => return Ok(Scale::MEDIUM),
            "large" => return Ok(Scale::LARGE),
            _ => {}
        }
        let mut scale = Scale::SMALL;
        if !s.contains('=') {
            let parts: Vec<_> = s.split('x').collect();
            let [w, p, o] = parts.as_slice() else {
                return Err(bad(
                    "expected small, medium, large, WxPxO or key=value pairs",
                ));
            };
            scale = Scale {
                workspaces: number(w)?,
                projects_per_workspace: number(p)?,
                objects_per_kind: number(o)?,
            };
        } else {
            for pair in s.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad("expected key=value"))?;
                let v = number(v)?;
                match k.trim() {
                    "workspaces" | "w" => scale.workspaces = v,
                    "projects" | "p" => scale.projects_per_workspace = v,
                    "objects" | "o" => scale.objects_per_kind = v,
                    other => return Err(bad(&format!("unknown key {other:?}"))),
                }
            }
        }
        if scale.workspaces == 0 || scale.projects_per_workspace == 0 {
            // One workspace with one project is the least that still shows every hazard.
            return Err(bad("workspaces and projects must be at least 1"));
        }
        Ok(scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_presets_and_numbers() {
        assert_eq!("small".parse::<Scale>().expect("small"), Scale::SMALL);
        assert_eq!("large".parse::<Scale>().expect("large"), Scale::LARGE);
        assert_eq!(
            "3x4x5".parse::<Scale>().expect("short"),
            Scale {
                workspaces: 3,
                projects_per_workspace: 4,
                objects_per_kind: 5
            }
        );
        let s: Scale = "objects=7,workspaces=2".parse().expect("pairs");
        assert_eq!(
            s,
            Scale {
                workspaces: 2,
                projects_per_workspace: 2,
                objects_per_kind: 7
            }
        );
        assert_eq!(
            s.to_string().parse::<Scale>().expect("display round-trips"),
            s
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["huge", "1x2", "w=x", "workspaces=0", "colour=3"] {
            assert!(bad.parse::<Scale>().is_err(), "{bad}");
        }
    }
}
