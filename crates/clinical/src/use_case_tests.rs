//! Unit tests of the use cases over in-memory fakes of their ports. They
//! live apart from the modules they test so that the fakes, which know
//! every port, add no import between those modules.

mod access;
mod assistant;
mod care_team;
mod export;
mod fakes;
mod organization;
mod schedule;
mod sharing;
mod speech;
mod stores;
