//! Benchmark results: every sample of every contender at every scale, their
//! median and spread, and the markdown table that shows them against the
//! floor and the hook method measured in the same run. Pure.

use serde::{Deserialize, Serialize};

use crate::audit::RequestCounts;

/// One timed run of one contender on a freshly seeded footprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Wall time of the removal, seconds (extrapolated when
    /// [`Sample::extrapolated`] says so).
    pub seconds: f64,
    /// Requests the API server logged for the contender (extrapolated with
    /// the time), `None` without an audit log.
    pub requests: Option<RequestCounts>,
    /// Peak RSS of the client, KiB (for the hook method: the largest kubectl).
    pub max_rss_kib: u64,
    /// Whether `kubesweep verify` passed afterwards.
    pub verified: bool,
    /// Set when only a sample of the objects was timed.
    pub extrapolated: Option<Extrapolation>,
    /// Free text for the reader (processes, actions).
    pub detail: String,
}

/// How a sampled run was extrapolated: the timed part as measured plus the
/// per-instance cost times the instances that were not timed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extrapolation {
    /// Seconds actually timed.
    pub measured_seconds: f64,
    /// Instances handled the timed way.
    pub timed_instances: usize,
    /// Instances removed untimed by the bench instead, and added at the
    /// per-instance cost.
    pub skipped_instances: usize,
    /// Mean seconds per timed instance (its patch and its delete).
    pub seconds_per_instance: f64,
}

/// Median and range of a set of figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// Of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    fn show(&self, decimals: usize) -> String {
        if self.min == self.max {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

/// What a contender is, for ratios and the plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `kubesweep apply` in some form.
    Kubesweep,
    /// `kubesweep plan`, read-only.
    Plan,
    /// KubeSphere's hook method through kubectl.
    Hook,
    /// kubesweep's plan, one kubectl per action (the earlier baseline).
    KubectlPerAction,
    /// The floor client at one concurrency.
    Floor,
}

/// All samples of one contender at one scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contender {
    /// Its name in the table.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Every run, in order.
    pub samples: Vec<Sample>,
    /// Median and range of `seconds` (filled by [`ScaleRun::summarise`]).
    pub seconds: Option<Spread>,
    /// Median and range of the contender's total requests.
    pub requests: Option<Spread>,
    /// Median and range of peak RSS, MiB.
    pub max_rss_mib: Option<Spread>,
}

impl Contender {
    /// A contender without samples yet.
    pub fn new(name: impl Into<String>, kind: Kind) -> Self {
        Contender {
            name: name.into(),
            kind,
            samples: Vec::new(),
            seconds: None,
            requests: None,
            max_rss_mib: None,
        }
    }

    fn summarise(&mut self) {
        self.seconds = Spread::of(self.samples.iter().map(|s| s.seconds));
        self.requests = Spread::of(
            self.samples
                .iter()
                .filter_map(|s| s.requests.as_ref().map(|r| r.total() as f64)),
        );
        self.max_rss_mib = Spread::of(self.samples.iter().map(|s| s.max_rss_kib as f64 / 1024.0));
    }

    /// Median requests by verb (the sample whose total is the median's
    /// nearest), for the table.
    fn typical_requests(&self) -> Option<&RequestCounts> {
        let median = self.requests?.median;
        self.samples
            .iter()
            .filter_map(|s| s.requests.as_ref())
            .min_by(|a, b| {
                (a.total() as f64 - median)
                    .abs()
                    .total_cmp(&(b.total() as f64 - median).abs())
            })
    }
}

/// Everything measured at one scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleRun {
    /// The scale as given (`small`, `medium`, `large`, `WxPxO`).
    pub scale: String,
    /// Objects seeded before every run.
    pub seeded_objects: usize,
    /// Actions in kubesweep's plan of that footprint.
    pub plan_actions: usize,
    /// Custom resources among the plan's actions.
    pub custom_resource_actions: usize,
    /// Each contender with its samples.
    pub contenders: Vec<Contender>,
}

impl ScaleRun {
    /// Fills every contender's spreads.
    pub fn summarise(&mut self) {
        for c in &mut self.contenders {
            c.summarise();
        }
    }

    /// The floor: the floor contender with the smallest median time.
    pub fn floor(&self) -> Option<&Contender> {
        self.contenders
            .iter()
            .filter(|c| c.kind == Kind::Floor && c.seconds.is_some())
            .min_by(|a, b| median(a).total_cmp(&median(b)))
    }

    fn of_kind(&self, kind: Kind) -> Option<&Contender> {
        self.contenders
            .iter()
            .find(|c| c.kind == kind && c.seconds.is_some())
    }

    /// The markdown table of this scale.
    pub fn table(&self) -> String {
        let floor = self.floor();
        let hook = self.of_kind(Kind::Hook);
        let mut out = format!(
            "Scale `{}`: {} objects seeded, a plan of {} actions ({} custom resources).\n\n",
            self.scale, self.seeded_objects, self.plan_actions, self.custom_resource_actions
        );
        out.push_str(
            "| contender | runs | seconds, median (min–max) | × floor | hook ÷ this | requests (server-side), median | by verb (median run) | controller manager's requests | peak RSS MiB | verify |\n\
             |---|---:|---:|---:|---:|---:|---|---:|---:|---|\n",
        );
        for c in &self.contenders {
            let Some(seconds) = c.seconds else { continue };
            let ratio = |num: f64, den: f64| format!("{:.2}", num / den);
            let vs_floor = floor.map_or("–".into(), |f| ratio(seconds.median, median(f)));
            let vs_hook = hook.map_or("–".into(), |h| ratio(median(h), seconds.median));
            let by_verb = c.typical_requests().map_or("–".into(), |r| {
                r.by_verb
                    .iter()
                    .map(|(v, n)| format!("{v} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let controllers = c
                .typical_requests()
                .map_or("–".into(), |r| r.controller_manager.to_string());
            let verified = c.samples.iter().filter(|s| s.verified).count();
            let extrapolated = c.samples.iter().find_map(|s| s.extrapolated.as_ref());
            let mut name = c.name.clone();
            if let Some(e) = extrapolated {
                name.push_str(&format!(
                    " — **extrapolated**: {} of {} instances timed, {:.3} s each added for the rest",
                    e.timed_instances,
                    e.timed_instances + e.skipped_instances,
                    e.seconds_per_instance
                ));
            }
            out.push_str(&format!(
                "| {name} | {} | {} | {vs_floor} | {vs_hook} | {} | {by_verb} | {controllers} | {} | {} |\n",
                c.samples.len(),
                seconds.show(1),
                c.requests.map_or("–".into(), |r| r.show(0)),
                c.max_rss_mib.map_or("–".into(), |r| r.show(0)),
                if verified == c.samples.len() {
                    "clean".to_owned()
                } else {
                    format!("{verified} of {} clean", c.samples.len())
                },
            ));
        }
        out
    }
}

fn median(c: &Contender) -> f64 {
    c.seconds.map_or(f64::INFINITY, |s| s.median)
}

/// The machine and the conditions of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// The API server's `/version` gitVersion.
    pub kubernetes: String,
    /// The 1-minute load average when the run started (other work on the
    /// machine shows here).
    pub load_average_at_start: String,
    /// Free text: whether other work ran concurrently.
    pub note: String,
}

/// One invocation's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// The command that reproduces it.
    pub command: String,
    /// UTC start time.
    pub started: String,
    /// One entry per scale.
    pub scales: Vec<ScaleRun>,
}

impl BenchReport {
    /// The whole report as markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Machine: {} cores, {:.0} GiB memory, Kubernetes {}; load average {} at the start ({}). Started {}.\n\nReproduce: `{}`\n\n",
            self.machine.cores,
            self.machine.memory_gib,
            self.machine.kubernetes,
            self.machine.load_average_at_start,
            self.machine.note,
            self.started,
            self.command
        );
        for s in &self.scales {
            out.push_str(&s.table());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: f64, requests: u64) -> Sample {
        let mut counts = RequestCounts::default();
        counts.by_verb.insert("delete".into(), requests);
        Sample {
            seconds,
            requests: Some(counts),
            max_rss_kib: 20 * 1024,
            verified: true,
            extrapolated: None,
            detail: String::new(),
        }
    }

    #[test]
    fn spread_is_median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even = Spread::of([4.0, 1.0, 2.0, 3.0]).expect("values");
        assert_eq!(even.median, 2.5);
        assert!(Spread::of([]).is_none());
    }

    #[test]
    fn table_compares_with_the_best_floor_and_the_hook() {
        let mut run = ScaleRun {
            scale: "small".into(),
            seeded_objects: 186,
            plan_actions: 135,
            custom_resource_actions: 54,
            contenders: vec![
                Contender::new("floor (8 in flight)", Kind::Floor),
                Contender::new("floor (64 in flight)", Kind::Floor),
                Contender::new("hook", Kind::Hook),
                Contender::new("kubesweep apply", Kind::Kubesweep),
            ],
        };
        run.contenders[0].samples = vec![sample(4.0, 100), sample(5.0, 100), sample(6.0, 100)];
        run.contenders[1].samples = vec![sample(2.0, 100), sample(2.0, 100), sample(3.0, 100)];
        run.contenders[2].samples = vec![sample(100.0, 900)];
        run.contenders[3].samples = vec![sample(4.0, 120), sample(3.0, 110), sample(5.0, 130)];
        run.summarise();
        assert_eq!(
            run.floor().map(|f| f.name.as_str()),
            Some("floor (64 in flight)")
        );
        let table = run.table();
        // apply: 4.0 s median, 2.0 s floor, 100 s hook.
        let line = table
            .lines()
            .find(|l| l.starts_with("| kubesweep apply"))
            .expect("apply row");
        assert!(
            line.contains("| 4.0 (3.0–5.0) | 2.00 | 25.00 | 120 (110–130) |"),
            "{line}"
        );
    }
}
