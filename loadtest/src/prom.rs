//! A small reader for the Prometheus text exposition format: enough for the service's
//! gauges, counters, histograms (`_sum`/`_count`) and labels.

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses every sample line; comments and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest, labels) = match line.find('{') {
        Some(open) if line[..open].chars().all(|c| !c.is_whitespace()) => {
            let (labels, after) = parse_labels(&line[open + 1..])?;
            (&line[..open], after, labels)
        }
        _ => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], &line[sp..], Vec::new())
        }
    };
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_string(), labels, value })
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after `}`.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        if bytes[i] == b'}' {
            return Some((labels, &s[i + 1..]));
        }
        let eq = s[i..].find('=')? + i;
        let key = s[i..eq].trim().to_string();
        i = eq + 1;
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let mut value = String::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                i += 1;
                value.push(match bytes[i] {
                    b'n' => '\n',
                    c => c as char,
                });
            } else {
                let ch = s[i..].chars().next()?;
                value.push(ch);
                i += ch.len_utf8() - 1;
            }
            i += 1;
        }
        i += 1;
        labels.push((key, value));
    }
}

/// The first sample named `name` (any labels).
pub fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

/// Sum over all label sets of `name`.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    let v: Vec<f64> = samples.iter().filter(|s| s.name == name).map(|s| s.value).collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

/// Cold-start phases in the order the service lists them: `NAME{phase="..."}` as a gauge, or
/// `NAME_sum{phase="..."}` when it is a histogram or summary.
pub fn phases(samples: &[Sample], name: &str) -> Vec<(String, f64)> {
    let sum_name = format!("{name}_sum");
    let mut out: Vec<(String, f64)> = Vec::new();
    for s in samples {
        if s.name != name && s.name != sum_name {
            continue;
        }
        if let Some(phase) = s.label("phase") {
            if !out.iter().any(|(p, _)| p == phase) {
                out.push((phase.to_string(), s.value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP tingxie_queue_depth Requests waiting.
# TYPE tingxie_queue_depth gauge
tingxie_queue_depth 3
tingxie_cold_start_phase_seconds{phase="config"} 0.001
tingxie_cold_start_phase_seconds{phase="weights",model="tiny \"en\""} 0.25
tingxie_cold_start_phase_seconds{phase="warmup"} 1.5e0
tingxie_compute_seconds_bucket{le="+Inf"} 7
tingxie_compute_seconds_sum 3.5
tingxie_compute_seconds_count 7
tingxie_requests_total{route="/transcribe",status="200"} 5 1700000000000
tingxie_requests_total{route="/",status="429"} 2
process_resident_memory_bytes 1.2345e8
"#;

    #[test]
    fn parses_samples() {
        let s = parse(TEXT);
        assert_eq!(value(&s, "tingxie_queue_depth"), Some(3.0));
        assert_eq!(value(&s, "tingxie_compute_seconds_sum"), Some(3.5));
        assert_eq!(sum(&s, "tingxie_requests_total"), Some(7.0));
        assert_eq!(value(&s, "process_resident_memory_bytes"), Some(123_450_000.0));
        assert_eq!(s[2].label("model"), Some("tiny \"en\""));
        assert_eq!(value(&s, "tingxie_compute_seconds_bucket"), Some(f64::INFINITY).map(|_| 7.0));
        assert_eq!(
            phases(&s, "tingxie_cold_start_phase_seconds"),
            vec![("config".into(), 0.001), ("weights".into(), 0.25), ("warmup".into(), 1.5)]
        );
    }

    #[test]
    fn histogram_phases() {
        let s = parse("x_sum{phase=\"cache\"} 2\nx_count{phase=\"cache\"} 1\n");
        assert_eq!(phases(&s, "x"), vec![("cache".into(), 2.0)]);
    }
}
