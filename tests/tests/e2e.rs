//! End-to-end tests against `moto_server` on loopback (see `lambda_canary_tests::Moto`).
//! The only test binary of this package; each area is a module under `e2e/`.

#[path = "e2e/agent.rs"]
mod agent;
#[path = "e2e/campaign.rs"]
mod campaign;
#[path = "e2e/gameday.rs"]
mod gameday;
#[path = "e2e/gateway.rs"]
mod gateway;
#[path = "e2e/notes.rs"]
mod notes;
#[path = "e2e/proxy.rs"]
mod proxy;
