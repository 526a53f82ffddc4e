//! Result tables (rows × allocators, medians, ratios to the baseline allocator,
//! geometric means) rendered as padded Markdown, and a grouped bar chart as hand-written
//! SVG.

use std::fmt::Write as _;

use crate::stats::geomean;

/// One measured cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Not applicable (e.g. tcmalloc for a Rust workload).
    NotApplicable,
    /// Not run, with the reason (e.g. peer library not installed).
    Skipped(String),
    /// At least one run failed; the reason of the first failure.
    Failed(String),
    /// The median of the runs.
    Value(f64),
}

impl Cell {
    /// The value, if any.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(*v),
            _ => None,
        }
    }
}

/// One row: a workload (or pattern) measured under every allocator.
#[derive(Debug, Clone)]
pub struct Row {
    /// Row label.
    pub name: String,
    /// One cell per allocator column.
    pub cells: Vec<Cell>,
}

/// A table of rows × allocators; column 0 is the baseline that ratios divide by.
#[derive(Debug, Clone)]
pub struct Table {
    /// What the numbers are ("median time, s").
    pub quantity: String,
    /// Allocator names; the first is the baseline.
    pub allocators: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
    /// Decimals for values.
    pub decimals: usize,
    /// Cells (row, column) whose runs gave a wrong checksum; shown with a trailing `!`.
    pub flags: Vec<(usize, usize)>,
    /// Paired ratios to the baseline, `paired[row][column]`: the median over repetitions of
    /// the cell's value divided by the baseline's value *in the same repetition* (runs of one
    /// repetition are adjacent in time, so the machine's drift cancels out of each quotient).
    /// Empty (or `None` for a cell) means the ratio of the medians.
    pub paired: Vec<Vec<Option<f64>>>,
}

impl Table {
    /// `cell / baseline` for row `r`, column `c`, when both have values.
    pub fn ratio(&self, r: usize, c: usize) -> Option<f64> {
        self.ratio_to(r, c, 0)
    }

    /// `cell / cell in column base` for row `r`, column `c`, when both have values (the paired
    /// ratio when the table has one and `base` is the baseline).
    pub fn ratio_to(&self, r: usize, c: usize, base: usize) -> Option<f64> {
        if base == 0 {
            if let Some(q) = self
                .paired
                .get(r)
                .and_then(|row| row.get(c))
                .copied()
                .flatten()
            {
                return Some(q);
            }
        }
        let row = &self.rows[r];
        let b = row.cells.get(base)?.value()?;
        let v = row.cells.get(c)?.value()?;
        (b > 0.0).then(|| v / b)
    }

    /// Geometric mean over rows of the ratio of column `c` to the baseline.
    pub fn geomean_ratio(&self, c: usize) -> Option<f64> {
        let ratios: Vec<f64> = (0..self.rows.len())
            .filter_map(|r| self.ratio(r, c))
            .collect();
        geomean(&ratios)
    }

    /// A Markdown table with padded columns (readable as plain text too). Peer cells
    /// carry their ratio to the baseline: `0.634 (1.24×)`; the last row is the geometric
    /// mean of those ratios.
    pub fn markdown(&self) -> String {
        let mut grid: Vec<Vec<String>> = Vec::new();
        let mut header = vec![self.quantity.clone()];
        for (c, a) in self.allocators.iter().enumerate() {
            header.push(if c == 0 {
                a.clone()
            } else {
                format!("{a} (×{})", self.allocators[0])
            });
        }
        grid.push(header);
        for (r, row) in self.rows.iter().enumerate() {
            let mut line = vec![row.name.clone()];
            for (c, cell) in row.cells.iter().enumerate() {
                line.push(match cell {
                    Cell::NotApplicable => "—".to_string(),
                    Cell::Skipped(_) => "skipped".to_string(),
                    Cell::Failed(_) => "FAIL".to_string(),
                    Cell::Value(v) => {
                        let mark = if self.flags.contains(&(r, c)) {
                            " !"
                        } else {
                            ""
                        };
                        match self.ratio(r, c) {
                            Some(q) if c > 0 => {
                                format!("{v:.d$} ({q:.2}×){mark}", d = self.decimals)
                            }
                            _ => format!("{v:.d$}{mark}", d = self.decimals),
                        }
                    }
                });
            }
            grid.push(line);
        }
        let mut gm = vec!["geomean ratio".to_string()];
        for c in 0..self.allocators.len() {
            gm.push(match (c, self.geomean_ratio(c)) {
                (0, _) => "1.00×".to_string(),
                (_, Some(g)) => format!("{g:.2}×"),
                (_, None) => "—".to_string(),
            });
        }
        grid.push(gm);
        render_grid(&grid)
    }

    /// Each failed or skipped cell with its reason, one bullet per line.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            for (c, cell) in row.cells.iter().enumerate() {
                let (what, why) = match cell {
                    Cell::Failed(why) => ("FAIL", why),
                    Cell::Skipped(why) => ("skipped", why),
                    _ => continue,
                };
                let _ = writeln!(
                    out,
                    "- {} / {}: {what}: {why}",
                    row.name, self.allocators[c]
                );
            }
        }
        out
    }
}

/// A table of how one column's ratio to the baseline moves from repetition to repetition:
/// per row, the median of `ratios[row]` (the ratio the time table shows), its lowest and
/// highest, and how many repetitions were more than `limit` (e.g. 1.05: 5 % slower). Rows
/// without ratios are left out.
pub fn spread_markdown(column: &str, rows: &[String], ratios: &[Vec<f64>], limit: f64) -> String {
    let mut grid = vec![vec![
        "row".to_string(),
        format!("{column}: median"),
        "lowest - highest".to_string(),
        format!("repetitions over {limit:.2}"),
    ]];
    for (name, qs) in rows.iter().zip(ratios) {
        let Some(m) = crate::stats::median(qs) else {
            continue;
        };
        let lo = qs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = qs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let over = qs.iter().filter(|&&q| q > limit).count();
        grid.push(vec![
            name.clone(),
            format!("{m:.2}×"),
            format!("{lo:.2} - {hi:.2}"),
            format!("{over} of {}", qs.len()),
        ]);
    }
    render_grid(&grid)
}

/// Renders rows of cells (the first row is the header) as a padded Markdown table; the
/// first column is left-aligned, the others right-aligned.
pub fn render_grid(grid: &[Vec<String>]) -> String {
    let cols = grid.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            grid.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in grid.iter().enumerate() {
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let s = row.get(c).map_or("", String::as_str);
            let pad = w - s.chars().count();
            if c == 0 {
                let _ = write!(out, " {s}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{s} |", " ".repeat(pad));
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (c, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                if c == 0 {
                    let _ = write!(out, "-{dashes}-|");
                } else {
                    let _ = write!(out, "-{dashes}:|");
                }
            }
            out.push('\n');
        }
    }
    out
}

// --- SVG chart -----------------------------------------------------------------------

/// Bar colours by allocator name (unknown names cycle through the extras).
fn colour(name: &str, index: usize) -> &'static str {
    match name {
        "arena" => "#d62728",
        "system" | "glibc" => "#7f7f7f",
        "mimalloc" => "#1f77b4",
        "jemalloc" => "#2ca02c",
        "tcmalloc" => "#ff7f0e",
        _ => ["#9467bd", "#8c564b", "#e377c2", "#17becf"][index % 4],
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One chart panel: a table drawn as groups of bars normalised to the baseline.
#[derive(Debug, Clone)]
pub struct Panel<'a> {
    /// Panel title.
    pub title: String,
    /// The data.
    pub table: &'a Table,
}

/// A self-contained SVG with one grouped bar chart per panel (one group per row, one bar
/// per allocator, values divided by the baseline's so that the baseline is 1.0), a
/// legend, and the value written above each bar. Bars above the axis limit are cut and
/// marked; failed cells get a red ✗. A row without a baseline value is normalised to its
/// first column that has one, and its label gets a `*` and a footnote.
pub fn chart_svg(heading: &str, panels: &[Panel<'_>]) -> String {
    const LEFT: f64 = 56.0;
    const BAR_W: f64 = 13.0;
    const GROUP_GAP: f64 = 18.0;
    const PLOT_H: f64 = 220.0;
    const PANEL_H: f64 = PLOT_H + 110.0;
    const TOP: f64 = 64.0;

    let Some(first) = panels.first() else {
        return String::new();
    };
    let allocators = &first.table.allocators;
    let bars = allocators.len().max(1) as f64;
    let groups = panels
        .iter()
        .map(|p| p.table.rows.len())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let group_w = bars * BAR_W + GROUP_GAP;
    let width = (LEFT + groups * group_w + 24.0)
        .max(560.0)
        .max(LEFT + 8.5 * heading.chars().count() as f64);
    let height = TOP + panels.len() as f64 * PANEL_H + 4.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(heading)
    );
    // Legend.
    let mut x = LEFT;
    for (i, a) in allocators.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="34" width="12" height="12" fill="{}"/><text x="{:.1}" y="44" font-size="12">{}</text>"#,
            colour(a, i),
            x + 16.0,
            escape(a)
        );
        x += 26.0 + 7.5 * a.len() as f64;
    }

    for (pi, panel) in panels.iter().enumerate() {
        let t = panel.table;
        let y0 = TOP + pi as f64 * PANEL_H + 44.0; // top of the plot area
        let base_y = y0 + PLOT_H;
        // Each row's baseline column: 0, or the first column with a value.
        let bases: Vec<usize> = t
            .rows
            .iter()
            .map(|row| {
                row.cells
                    .iter()
                    .position(|c| c.value().is_some())
                    .unwrap_or(0)
            })
            .collect();
        let ratios: Vec<Vec<Option<f64>>> = (0..t.rows.len())
            .map(|r| {
                (0..t.allocators.len())
                    .map(|c| t.ratio_to(r, c, bases[r]))
                    .collect()
            })
            .collect();
        let max = ratios
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(1.0f64, f64::max);
        let limit = ((max * 2.0).ceil() / 2.0).clamp(1.5, 3.0);
        let y_of = |v: f64| base_y - PLOT_H * (v.min(limit) / limit);

        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
            y0 - 30.0,
            escape(&panel.title)
        );
        let substituted: Vec<&str> = bases
            .iter()
            .filter(|&&b| b != 0)
            .map(|&b| t.allocators[b].as_str())
            .collect();
        if let Some(name) = substituted.first() {
            let _ = writeln!(
                s,
                r##"<text x="{LEFT}" y="{:.1}" font-size="11" fill="#555">* no {} result: normalised to {name} = 1.0</text>"##,
                base_y + 34.0,
                escape(&t.allocators[0])
            );
        }
        // Grid lines every 0.5.
        let mut g = 0.0;
        while g <= limit + 1e-9 {
            let y = y_of(g);
            let dash = if (g - 1.0).abs() < 1e-9 {
                r##" stroke-dasharray="5,3" stroke="#444""##
            } else {
                r##" stroke="#ddd""##
            };
            let _ = writeln!(
                s,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"{dash}/>"#,
                width - 16.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{g:.1}</text>"#,
                LEFT - 6.0,
                y + 3.5
            );
            g += 0.5;
        }
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{base_y:.1}" x2="{:.1}" y2="{base_y:.1}" stroke="#000"/>"##,
            width - 16.0
        );

        for (r, row) in t.rows.iter().enumerate() {
            let gx = LEFT + GROUP_GAP / 2.0 + r as f64 * group_w;
            for (c, cell) in row.cells.iter().enumerate() {
                let bx = gx + c as f64 * BAR_W;
                let cx = bx + BAR_W / 2.0;
                match (cell, ratios[r][c]) {
                    (Cell::Failed(_), _) => {
                        let _ = writeln!(
                            s,
                            r##"<text x="{cx:.1}" y="{:.1}" font-size="12" fill="#d00" text-anchor="middle">✗</text>"##,
                            base_y - 3.0
                        );
                    }
                    (_, Some(v)) => {
                        let y = y_of(v);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{bx:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} / {}: {v:.2}</title></rect>"#,
                            BAR_W - 1.5,
                            base_y - y,
                            colour(&t.allocators[c], c),
                            escape(&row.name),
                            escape(&t.allocators[c])
                        );
                        let label = if v > limit {
                            format!("{v:.1}↑")
                        } else {
                            format!("{v:.2}")
                        };
                        let _ = writeln!(
                            s,
                            r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="9">{label}</text>"#,
                            cx + 3.0,
                            y - 3.0
                        );
                    }
                    _ => {}
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                gx + bars * BAR_W / 2.0,
                base_y + 16.0,
                escape(&row.name) + if bases[r] == 0 { "" } else { "*" }
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            quantity: "time, s".into(),
            allocators: vec!["arena".into(), "system".into(), "tcmalloc".into()],
            rows: vec![
                Row {
                    name: "a".into(),
                    cells: vec![Cell::Value(1.0), Cell::Value(2.0), Cell::NotApplicable],
                },
                Row {
                    name: "b".into(),
                    cells: vec![
                        Cell::Value(2.0),
                        Cell::Value(1.0),
                        Cell::Failed("SIGSEGV".into()),
                    ],
                },
            ],
            decimals: 3,
            flags: vec![(1, 1)],
            paired: Vec::new(),
        }
    }

    #[test]
    fn paired_ratios_override_the_ratio_of_medians() {
        let mut t = table();
        t.paired = vec![vec![None, Some(1.5), None], vec![]];
        assert_eq!(t.ratio(0, 1), Some(1.5));
        assert_eq!(
            t.ratio(1, 1),
            Some(0.5),
            "no paired value: ratio of the medians"
        );
        assert!(t.markdown().contains("2.000 (1.50×)"));
    }

    #[test]
    fn the_spread_gives_median_range_and_count_over_the_limit() {
        let md = spread_markdown(
            "runs",
            &["a".into(), "b".into(), "c".into()],
            &[vec![1.2, 0.9, 1.0], vec![], vec![0.5]],
            1.05,
        );
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines.len(),
            4,
            "a header, its rule and two rows (b has no ratios): {md}"
        );
        assert!(lines[2].contains("1.00×") && lines[2].contains("0.90 - 1.20"));
        assert!(lines[2].contains("1 of 3"), "{md}");
        assert!(
            lines[3].contains("0.50 - 0.50") && lines[3].contains("0 of 1"),
            "{md}"
        );
    }

    #[test]
    fn ratios_and_geomean() {
        let t = table();
        assert_eq!(t.ratio(0, 1), Some(2.0));
        assert_eq!(t.ratio(1, 1), Some(0.5));
        assert!((t.geomean_ratio(1).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(t.geomean_ratio(2), None);
        let md = t.markdown();
        assert!(md.contains("2.000 (2.00×)"), "{md}");
        assert!(md.contains("FAIL"));
        assert!(md.contains("1.000 (0.50×) !"), "{md}");
        assert!(t.notes().contains("b / tcmalloc: FAIL: SIGSEGV"));
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let t = table();
        let svg = chart_svg(
            "x",
            &[Panel {
                title: "time".into(),
                table: &t,
            }],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect").count(),
            svg.matches("</rect>").count() + 1 + 3
        );
    }
}
