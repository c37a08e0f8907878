//! The vehicle: perception logic (`detector`, `tracker`, `watch`: pure functions of their inputs)
//! and the actix node around it (`node`: one actor a file), the telemetry spool and the
//! scheduling planes.

pub mod detector;
pub mod node;
pub mod priority;
pub mod spool;
pub mod tracker;
pub mod watch;
