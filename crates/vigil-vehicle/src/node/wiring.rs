//! Starting a node: which actor runs on which arbiter, and who holds whose address.

use actix::prelude::*;
use tokio_stream::wrappers::ReceiverStream;
use vigil_bus::BusSample;

use super::dispatcher::Dispatcher;
use super::fusion::Fusion;
use super::handler::RecommendationHandler;
use super::ingest::Ingest;
use super::{NodeConfig, NodeDeps, Stream};
use crate::spool::start_spool;

/// The zenoh channels feeding one node, one per [`Stream`].
#[derive(Debug)]
pub struct SensorInputs(pub Vec<(Stream, tokio::sync::mpsc::Receiver<BusSample>)>);

/// Addresses of a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub fusion: Option<Addr<Fusion>>,
    pub dispatcher: Option<Addr<Dispatcher>>,
    pub handler: Option<Addr<RecommendationHandler>>,
}

/// Starts one vehicle node: fusion, dispatcher and handler on the current arbiter (the
/// urgent plane), the ingest actors on `io` (decoding megabyte frames there keeps it off
/// the path from detection to action), the telemetry spooler on `bulk` and its forwarder
/// on `forward`, where a slow log can block nothing else. Call inside a running actix
/// `System`.
pub fn start_node(
    cfg: NodeConfig,
    deps: NodeDeps,
    inputs: SensorInputs,
    io: &ArbiterHandle,
    bulk: &ArbiterHandle,
    forward: &ArbiterHandle,
) -> NodeHandle {
    let telemetry =
        start_spool(cfg.spool.clone(), &cfg.vehicle, &cfg.run, deps.log.clone(), deps.stats.clone(), bulk, forward);
    let (fusion, dispatcher, handler) = if cfg.perception {
        // Fusion and the handler hold each other's address: fusion's context first.
        let fusion_ctx: Context<Fusion> = Context::new();
        let handler =
            RecommendationHandler::new(cfg.clone(), &deps, telemetry.clone(), fusion_ctx.address().recipient()).start();
        let dispatcher = Dispatcher::new(&cfg, &deps, telemetry.clone(), handler.clone()).start();
        let fusion = fusion_ctx.run(Fusion::new(cfg.clone(), &deps, dispatcher.clone(), handler.clone()));
        (Some(fusion), Some(dispatcher), Some(handler))
    } else {
        (None, None, None)
    };
    for (kind, rx) in inputs.0 {
        let ingest = Ingest::new(kind, &cfg, &deps, telemetry.clone(), fusion.clone());
        Ingest::start_in_arbiter(io, move |ctx| {
            ctx.add_stream(ReceiverStream::new(rx));
            ingest
        });
    }
    NodeHandle { fusion, dispatcher, handler }
}
