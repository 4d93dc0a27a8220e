//! End-to-end tests across Strata's crates, against real services: the local
//! MariaDB, librdkafka's mock cluster and Delta tables on disk. The tests live
//! in `e2e/`; this library is empty.
