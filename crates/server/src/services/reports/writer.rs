//! A report's rows into a file, CSV or XLSX, one row at a time: memory stays one row whatever
//! the report's length.
//!
//! - CSV: the `csv` crate (RFC 4180: quoted when needed, CRLF line ends), UTF-8, header row
//!   first; amounts printed as exact decimals.
//! - XLSX: `rust_xlsxwriter` in constant-memory mode (each finished row goes to a temp file);
//!   counts and amounts are numeric cells (amounts with a `0.00` format: Excel's cells are
//!   doubles, and an amount in cents below 2⁵³ reads back exactly at two decimals), text as
//!   it is. A sheet holds 1,048,576 rows: a longer report continues on `Sheet2`, header first.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use ordermill_core::report::{Cell, ReportFormat};
use rust_xlsxwriter::{Format, Workbook, XlsxError};

/// Rows per XLSX sheet, the header included (Excel's limit).
const SHEET_ROWS: u32 = 1_048_576;

/// Why a report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file system refused (full disk, permissions).
    #[error("cannot write the report file: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV writer refused.
    #[error("cannot write the CSV file: {0}")]
    Csv(#[from] csv::Error),
    /// The XLSX writer refused.
    #[error("cannot write the XLSX file: {0}")]
    Xlsx(#[from] XlsxError),
}

/// An open report file.
pub enum RowWriter {
    /// CSV, straight to the file.
    Csv(Box<csv::Writer<BufWriter<File>>>),
    /// XLSX: the workbook streams rows to temp files and is assembled at `finish`.
    Xlsx(Box<XlsxRows>),
}

/// The XLSX side of [`RowWriter`].
pub struct XlsxRows {
    workbook: Workbook,
    path: PathBuf,
    columns: Vec<String>,
    sheet: usize,
    row: u32,
    money: Format,
}

impl RowWriter {
    /// Opens `path` for a report of `format` and writes the header row.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn create(format: ReportFormat, path: &Path, columns: &[&str]) -> Result<Self, WriteError> {
        match format {
            ReportFormat::Csv => {
                let file = BufWriter::with_capacity(256 * 1024, File::create(path)?);
                let mut csv =
                    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(file);
                csv.write_record(columns)?;
                Ok(RowWriter::Csv(Box::new(csv)))
            }
            ReportFormat::Xlsx => {
                let mut workbook = Workbook::new();
                // Beside the final file, not in /tmp: the data dir is where space was planned.
                if let Some(dir) = path.parent() {
                    workbook.set_tempdir(dir)?;
                }
                let mut rows = XlsxRows {
                    workbook,
                    path: path.to_path_buf(),
                    columns: columns.iter().map(|c| (*c).to_owned()).collect(),
                    sheet: 0,
                    row: 0,
                    money: Format::new().set_num_format("0.00"),
                };
                rows.new_sheet()?;
                Ok(RowWriter::Xlsx(Box::new(rows)))
            }
        }
    }

    /// Writes one row.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&mut self, cells: &[Cell]) -> Result<(), WriteError> {
        match self {
            RowWriter::Csv(csv) => {
                csv.write_record(cells.iter().map(Cell::to_string))?;
                Ok(())
            }
            RowWriter::Xlsx(rows) => rows.write(cells),
        }
    }

    /// Completes the file (flushes it; assembles the workbook).
    ///
    /// # Errors
    /// When the file cannot be completed.
    pub fn finish(self) -> Result<(), WriteError> {
        match self {
            RowWriter::Csv(csv) => {
                let file = (*csv).into_inner().map_err(|e| WriteError::Io(e.into_error()))?;
                file.into_inner().map_err(|e| WriteError::Io(e.into_error()))?.sync_all()?;
                Ok(())
            }
            RowWriter::Xlsx(mut rows) => {
                let path = rows.path.clone();
                rows.workbook.save(&path)?;
                File::open(&path)?.sync_all()?;
                Ok(())
            }
        }
    }
}

impl XlsxRows {
    fn new_sheet(&mut self) -> Result<(), WriteError> {
        let sheet = self.workbook.add_worksheet_with_constant_memory()?;
        for (col, name) in self.columns.iter().enumerate() {
            sheet.write_string(0, col_num(col), name.as_str())?;
        }
        self.sheet = self.workbook.worksheets().len().saturating_sub(1);
        self.row = 1;
        Ok(())
    }

    fn write(&mut self, cells: &[Cell]) -> Result<(), WriteError> {
        if self.row == SHEET_ROWS {
            self.new_sheet()?;
        }
        let (row, money) = (self.row, &self.money);
        let sheet = self.workbook.worksheet_from_index(self.sheet)?;
        for (col, cell) in cells.iter().enumerate() {
            let col = col_num(col);
            match cell {
                Cell::Text(text) => sheet.write_string(row, col, text.as_str())?,
                Cell::Count(n) => sheet.write_number(row, col, *n as f64)?,
                Cell::Amount(minor) => {
                    sheet.write_number_with_format(row, col, *minor as f64 / 100.0, money)?
                }
                Cell::Time(at) => sheet.write_string(row, col, at.to_string())?,
            };
        }
        self.row += 1;
        Ok(())
    }
}

/// A column index as the XLSX writer counts them (a report has a handful of columns).
fn col_num(col: usize) -> u16 {
    u16::try_from(col).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use ordermill_core::UnixMillis;

    use super::*;

    fn rows() -> Vec<Vec<Cell>> {
        vec![
            vec![
                Cell::Text("大闸蟹, \"礼盒\"".into()),
                Cell::Count(3),
                Cell::Amount(5997),
                Cell::Time(UnixMillis(0)),
            ],
            vec![
                Cell::Text("tea".into()),
                Cell::Count(1),
                Cell::Amount(5),
                Cell::Time(UnixMillis(1)),
            ],
        ]
    }

    #[test]
    fn csv_is_rfc_4180_with_exact_amounts_and_chinese_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut writer =
            RowWriter::create(ReportFormat::Csv, &path, &["sku", "units", "revenue", "at"])
                .unwrap();
        for row in rows() {
            writer.write(&row).unwrap();
        }
        writer.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "sku,units,revenue,at\r\n\"大闸蟹, \"\"礼盒\"\"\",3,59.97,1970-01-01T00:00:00.000Z\r\ntea,1,0.05,1970-01-01T00:00:00.001Z\r\n"
        );
        let mut read = csv::Reader::from_path(&path).unwrap();
        let first = read.records().next().unwrap().unwrap();
        assert_eq!(&first[0], "大闸蟹, \"礼盒\"");
    }

    #[test]
    fn xlsx_is_a_zip_with_numeric_cells_and_the_text_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xlsx");
        let mut writer =
            RowWriter::create(ReportFormat::Xlsx, &path, &["sku", "units", "revenue", "at"])
                .unwrap();
        for row in rows() {
            writer.write(&row).unwrap();
        }
        writer.finish().unwrap();
        let mut bytes = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes[..2], b"PK", "an XLSX file is a zip");
        // The sheet's XML, out of the zip (stored or deflated: let the zip reader decide).
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut sheet = String::new();
        zip.by_name("xl/worksheets/sheet1.xml").unwrap().read_to_string(&mut sheet).unwrap();
        assert!(
            sheet.contains("大闸蟹, &quot;礼盒&quot;") || sheet.contains("大闸蟹, \"礼盒\""),
            "{sheet}"
        );
        assert!(sheet.contains("<v>59.97</v>"), "revenue as a number: {sheet}");
        assert!(sheet.contains("<v>3</v>"), "units as a number: {sheet}");
    }
}
