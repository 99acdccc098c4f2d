//! rafka-tests: the black-box cluster harness (real broker processes, fault controls) and
//! the integration and fault suites that run against it. Empty until the broker exists.
