//! `vigil-safety`: the safety matrix. NCAP-style emergency-braking cells generated from
//! parameters ([`cells`]), each run over seeds with perception on and off ([`run`]),
//! summarised, scored and gated ([`report`]), and drawn as a heatmap ([`plot`]).

pub mod cells;
pub mod plot;
pub mod report;
pub mod run;

pub use cells::{Cell, Family, matrix, quick};
pub use report::{CellSummary, Grade, SafetyReport, table};
pub use run::{Job, RunSettings};

/// Why the matrix could not run.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    #[error(transparent)]
    Scenario(#[from] vigil_sim::ScenarioError),
    #[error(transparent)]
    Run(#[from] vigil_pipeline::RunError),
    #[error("{0}")]
    Setup(String),
    #[error("safety matrix: {0}")]
    Drive(String),
    #[error(transparent)]
    Plot(#[from] vigil_plot::PlotError),
}
