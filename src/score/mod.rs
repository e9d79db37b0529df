//! (in progress)

pub mod decide;
