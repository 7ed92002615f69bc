//! Benchmark results and their table: every variant as wall time and as a
//! ratio against the baseline measured in the same run. Pure.

use serde::{Deserialize, Serialize};

/// One measured variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What ran, e.g. `kubesweep apply (--max-in-flight 32)`.
    pub variant: String,
    /// Wall time of the removal, seconds.
    pub seconds: f64,
    /// Processes or plan actions it took, for the reader.
    pub detail: String,
    /// Whether `kubesweep verify` passed afterwards (the work was complete).
    pub verified: bool,
}

/// Everything one run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Scale of the seeded footprint.
    pub scale: String,
    /// Objects seeded per variant.
    pub seeded_objects: usize,
    /// Actions in kubesweep's plan.
    pub plan_actions: usize,
    /// Seconds `kubesweep plan` took (discovery + planning), on its own.
    pub plan_seconds: f64,
    /// The baseline first, then the others.
    pub measurements: Vec<Measurement>,
}

impl BenchReport {
    /// The table: variant, seconds, speed-up over the first measurement
    /// (the baseline), verification, detail.
    pub fn table(&self) -> String {
        let mut out = format!(
            "footprint: scale {}, {} objects seeded, plan of {} actions (plan alone: {:.1}s)\n",
            self.scale, self.seeded_objects, self.plan_actions, self.plan_seconds
        );
        let Some(baseline) = self.measurements.first() else {
            return out;
        };
        out.push_str(&format!(
            "{:<44} {:>9} {:>9}  {:<8} {}\n",
            "variant", "seconds", "speed-up", "verify", "detail"
        ));
        for m in &self.measurements {
            let ratio = if m.seconds > 0.0 {
                baseline.seconds / m.seconds
            } else {
                f64::INFINITY
            };
            out.push_str(&format!(
                "{:<44} {:>9.1} {:>8.2}x  {:<8} {}\n",
                m.variant,
                m.seconds,
                ratio,
                if m.verified { "clean" } else { "LEFTOVERS" },
                m.detail
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_against_the_first_measurement() {
        let m = |variant: &str, seconds| Measurement {
            variant: variant.into(),
            seconds,
            detail: String::new(),
            verified: true,
        };
        let report = BenchReport {
            scale: "small".into(),
            seeded_objects: 10,
            plan_actions: 5,
            plan_seconds: 0.5,
            measurements: vec![m("baseline", 30.0), m("fast", 7.5)],
        };
        let table = report.table();
        assert!(table.contains("1.00x"), "{table}");
        assert!(table.contains("4.00x"), "{table}");
    }
}
