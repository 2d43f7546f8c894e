//! Google Sheets uploader (being built; see issue 3).

use std::sync::Arc;

use crate::config::SheetsConfig;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::sink::csv::CsvSink;
use crate::stats::Stats;

pub struct Uploader;

impl Uploader {
    pub fn start(_c: SheetsConfig, _s: &Arc<CsvSink>, _st: Arc<Stats>, _sd: Arc<Shutdown>) -> Result<Uploader> {
        Err(Error::startup("start the Google Sheets uploader", "not built yet"))
    }

    pub fn finish(self, _s: &CsvSink) {}
}

pub mod check {
    use crate::cli::CheckArgs;
    use crate::error::{Error, Result};

    pub fn run(_args: &CheckArgs) -> Result<()> {
        Err(Error::startup("check the Google Sheets set-up", "not built yet"))
    }
}
