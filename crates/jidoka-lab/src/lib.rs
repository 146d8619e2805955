//! Jidoka's lab: the harnesses that measure the service, apart from it so that an integrator
//! reading the service does not step over them and a change here does not rebuild the server.
//!
//! Code map: [`eval`] (eval sequence), [`torque`] (analyze torque, eval torque on the simulator
//! and real data, bench torque), [`triage`] (eval triage on labelled files, eval clusters on the
//! simulator, bench triage), [`bench`] (ingest, sequence, api, outbox, dashboard), [`simulate`]
//! (sim, bench sim), [`op`] (op decode, bench openprotocol), [`mqtt`] (a Mosquitto `Broker` for
//! tests and benches, bench mqtt), [`resequence`] (resequence solve, eval resequence), [`shortage`] (eval shortage). It depends on `jidoka-service`, never the other way round.

pub mod bench;
pub mod eval;
pub mod mqtt;
pub mod op;
pub mod resequence;
pub mod shortage;
pub mod simulate;
pub mod torque;
pub mod triage;
