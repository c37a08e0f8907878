//! On-vehicle perception logic (pure; the actors wrap it).

pub mod detector;
pub mod node;
pub mod priority;
pub mod spool;
pub mod tracker;
