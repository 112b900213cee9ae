//! Nothing here: the point of this project is its tests (tests/backup.rs).
