//! How the bench writes figures and draws tables: times, counts, rates, sizes, and
//! comfy-table tables with right-aligned figures.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use std::time::Duration;

/// A duration in ms for labels: `0`, `1`, `0.5`.
pub fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    format!("{ms}")
}

/// A time in ms with sensible precision.
pub fn t(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A count that may be a fractional average.
pub fn n(x: f64) -> String {
    if (x - x.round()).abs() < 0.05 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// A share as a percentage with one decimal: `12.5%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A size in MiB, or in GiB from 1 GiB on.
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

/// A condensed table with this header.
pub fn table(header: Vec<String>) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(header);
    table
}

/// A table whose long cells wrap: to the terminal's width, or to 160 columns when the
/// output is not a terminal.
pub fn wrapping(header: Vec<String>) -> Table {
    let mut table = table(header);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if table.width().is_none() {
        table.set_width(160);
    }
    table
}

/// Aligns the columns from `from` on to the right (figures).
pub fn right(table: &mut Table, from: usize) {
    let columns = table.column_count();
    for i in from..columns {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}
