//! Starting a scaled-out node on engines that are not ready for it says what to do in one
//! line, instead of failing on a raw database error. Needs ORDERMILL_TEST_POSTGRES_URL,
//! ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use support::scaled::{Deployment, Services};

#[tokio::test]
async fn an_api_or_worker_started_before_migrate_names_the_command_to_run() {
    let Some(services) = Services::from_env() else { return };
    let deployment = Deployment::new(services);
    for command in ["api", "worker"] {
        let out = deployment.run(&[command]);
        assert!(!out.status.success(), "{command} started on an empty schema");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not set up for this release"), "{command}: {err}");
        assert!(err.contains("run `ordermill migrate --store postgres://"), "{command}: {err}");
        assert!(!err.contains("does not exist"), "no raw database error: {err}");
    }
    deployment.migrate();
    let out = deployment.run(&["migrate"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema is up to date"));
}
