//! Medians, percentiles and the report rows every scenario produces.

use serde::Serialize;

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// The `quantile` (0..=1) of `values` by nearest rank; 0 for none.
pub fn percentile(values: &[f64], quantile: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether a target was met.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// No target: reported only.
    Reported,
}

/// One line of a scenario's table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is measured.
    pub metric: String,
    /// modhost's figure (medians over rounds).
    pub value: String,
    /// The baseline's figure, if there is a baseline.
    pub baseline: String,
    /// modhost / baseline.
    pub ratio: Option<f64>,
    /// The target.
    pub target: String,
    /// Met or not.
    pub verdict: Verdict,
}

impl Row {
    /// A row without a baseline.
    pub fn new(metric: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: None,
            target: String::new(),
            verdict: Verdict::Reported,
        }
    }

    /// Adds the baseline and the ratio.
    pub fn baseline(mut self, baseline: impl Into<String>, ratio: f64) -> Row {
        self.baseline = baseline.into();
        self.ratio = Some(ratio);
        self
    }

    /// Adds a target and whether it was met.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = target.into();
        self.verdict = if met { Verdict::Met } else { Verdict::Missed };
        self
    }
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Scenario name (`bench`, `users`, ...).
    pub scenario: String,
    /// What it measures, one line.
    pub title: String,
    /// The table.
    pub rows: Vec<Row>,
    /// Every run's raw figures.
    pub runs: serde_json::Value,
}

/// The markdown table of `sections`.
pub fn markdown(sections: &[Section]) -> String {
    let mut out = String::new();
    for section in sections {
        out.push_str(&format!(
            "\n**`{}`** — {}\n\n",
            section.scenario, section.title
        ));
        out.push_str("| metric | modhost | baseline | ratio | target | |\n");
        out.push_str("|---|---:|---:|---:|---|---|\n");
        for row in &section.rows {
            let ratio = row
                .ratio
                .map(|ratio| match ratio * 100.0 {
                    percent if percent < 10.0 => format!("{percent:.1}%"),
                    percent => format!("{percent:.0}%"),
                })
                .unwrap_or_default();
            let verdict = match row.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
                Verdict::Reported => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.metric, row.value, row.baseline, ratio, row.target, verdict
            ));
        }
    }
    out
}

/// `12345.6` → `12.3k`.
pub fn rate(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.2}M", value / 1_000_000.0)
    } else if value >= 1_000.0 {
        format!("{:.1}k", value / 1_000.0)
    } else {
        format!("{value:.0}")
    }
}

/// Microseconds as `µs` or `ms`.
pub fn micros(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} ms", value / 1000.0)
    } else if value >= 1000.0 {
        format!("{:.2} ms", value / 1000.0)
    } else {
        format!("{value:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.5), 50.0);
        assert_eq!(percentile(&hundred, 0.99), 99.0);
        assert_eq!(percentile(&hundred, 1.0), 100.0);
    }

    #[test]
    fn rows_render_verdicts_and_small_ratios() {
        let section = Section {
            scenario: "x".into(),
            title: "t".into(),
            rows: vec![
                Row::new("a", "1")
                    .baseline("40", 0.025)
                    .target("≥ 1", false),
            ],
            runs: serde_json::Value::Null,
        };
        let table = markdown(&[section]);
        assert!(
            table.contains("| a | 1 | 40 | 2.5% | ≥ 1 | **missed** |"),
            "{table}"
        );
    }
}
