//! The attack surface in one place: each module tries to break one
//! security promise the way an attacker would (raw requests, odd
//! encodings, replays, races, a dependency that hangs) through the real
//! server on a random port, on both databases where storage is involved.

mod faults;
mod migrations;
