//! Reports (报表): the files a report is written as. The job that runs a report, the stores of
//! its files and its endpoints come next (docs/ARCHITECTURE.md, "Reports").

pub mod writer;
