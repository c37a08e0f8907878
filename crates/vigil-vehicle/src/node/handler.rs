//! The recommendation handler: applies answers inside their deadline, falls back
//! otherwise, and tells fusion when a track's task has ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use vigil_bus::transport::reply_stream;
use vigil_bus::{Reply, TaskTransport, TransportError, topics};
use vigil_core::policy::{Action, PATH_HALF_WIDTH_M};
use vigil_core::{Clock, Nanos};
use vigil_proto::action_from_proto;

use super::control::ControlCommand;
use super::dispatcher::Outstanding;
use super::events::{CautionApplied, InternalEvent, NoCameraFallback, ReplyRejected};
use super::fusion::{Caution, NoCamera, TrackSettled, reply_address};
use super::stats::{NodeStats, inc};
use super::{NodeConfig, NodeDeps, TelemetrySpool, ToLog};

/// How long an applied action holds against a weaker one, nanoseconds.
pub const HOLD_NS: Nanos = 1_000_000_000;

fn urgency(a: Action) -> u8 {
    match a {
        Action::BrakeHard => 4,
        Action::Brake => 3,
        Action::SteerLeft | Action::SteerRight => 2,
        Action::SlowDown => 1,
        Action::Continue => 0,
    }
}

/// The fallback with no recommendation: brake for what is close in time and in the path
/// (the policy's own geometry: a car parked beside the lane leaves the camera's view as
/// the ego passes it, and is no reason to stop).
fn brakes(ttc_s: f64, offset_m: f64, fallback_ttc_s: f64) -> bool {
    ttc_s < fallback_ttc_s && (offset_m.is_nan() || offset_m <= PATH_HALF_WIDTH_M)
}

/// Applies recommendations (deduplicated, deadline-guarded) and the fallback policy.
#[derive(Debug)]
pub struct RecommendationHandler {
    cfg: NodeConfig,
    clock: Arc<dyn Clock>,
    tasks: Arc<dyn TaskTransport>,
    telemetry: TelemetrySpool,
    stats: Arc<NodeStats>,
    control: std::sync::mpsc::Sender<ControlCommand>,
    fusion: Recipient<TrackSettled>,
    outstanding: HashMap<String, Outstanding>,
    /// Tasks resolved (answered or fallen back), kept a while after their deadline to
    /// tell a stale or duplicate reply from an unknown one.
    resolved: Resolved,
    current: Option<(Action, Nanos)>,
}

/// How a task ended, for classifying late replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Answered,
    TimedOut,
}

/// How long past its deadline a resolved task is remembered, and how many at most (a
/// reply later than either is counted unknown instead of stale).
const RESOLVED_MEMORY_NS: Nanos = 10_000_000_000;
const RESOLVED_CAPACITY: usize = 16_384;

/// Resolved task ids in the order they were resolved, pruned from the front: the cost of
/// forgetting is the number forgotten, not the number held (a scan of every id each
/// deadline check grew the p99 with the task rate in the soak bench).
#[derive(Debug, Default)]
struct Resolved {
    ids: HashMap<String, Resolution>,
    order: std::collections::VecDeque<(Nanos, String)>,
}

impl Resolved {
    fn insert(&mut self, id: &str, deadline_ns: Nanos, how: Resolution) {
        if self.ids.insert(id.to_string(), how).is_none() {
            self.order.push_back((deadline_ns, id.to_string()));
        }
    }

    fn get(&self, id: &str) -> Option<Resolution> {
        self.ids.get(id).copied()
    }

    /// Forgets what is older than the memory or beyond the capacity. Deadlines arrive
    /// nearly in order; an out-of-order one waits behind the front.
    fn prune(&mut self, now_ns: Nanos) {
        while let Some((deadline, _)) = self.order.front() {
            if *deadline + RESOLVED_MEMORY_NS > now_ns && self.order.len() <= RESOLVED_CAPACITY {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
}

impl Actor for RecommendationHandler {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        let tasks = self.tasks.clone();
        let address = reply_address(&self.cfg.vehicle);
        ctx.wait(async move { tasks.replies(&address).await }.into_actor(self).map(|r, _, ctx| match r {
            Ok(consumer) => {
                ctx.add_stream(reply_stream(consumer));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot consume recommendations; every task will fall back");
            }
        }));
        ctx.run_interval(Duration::from_millis(2), |act, _| act.check_deadlines());
    }
}

impl RecommendationHandler {
    pub(super) fn new(
        cfg: NodeConfig,
        deps: &NodeDeps,
        telemetry: TelemetrySpool,
        fusion: Recipient<TrackSettled>,
    ) -> Self {
        Self {
            cfg,
            clock: deps.clock.clone(),
            tasks: deps.tasks.clone(),
            telemetry,
            stats: deps.stats.clone(),
            control: deps.control.clone(),
            fusion,
            outstanding: HashMap::new(),
            resolved: Resolved::default(),
            current: None,
        }
    }

    fn resolve(&mut self, task_id: &str, how: Resolution) -> Option<Outstanding> {
        let o = self.outstanding.remove(task_id)?;
        self.resolved.insert(task_id, o.deadline_ns, how);
        Some(o)
    }

    /// The task's end state is counted and its control (if any) sent: it is no longer
    /// outstanding, and its track may raise a new task.
    fn finish(&mut self, o: &Outstanding) {
        self.fusion.do_send(TrackSettled(o.track_id));
        self.stats.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.stats.progress.moved();
    }

    fn apply(&mut self, task_id: &str, action: Action, fallback: bool) {
        let now = self.clock.now_ns();
        if action == Action::Continue {
            return;
        }
        if let Some((cur, at)) = self.current
            && urgency(action) < urgency(cur)
            && now - at < HOLD_NS
        {
            return;
        }
        self.current = Some((action, now));
        let _ = self.control.send(ControlCommand {
            vehicle: self.cfg.vehicle.clone(),
            task_id: task_id.into(),
            action,
            at_ns: now,
            fallback,
        });
    }

    fn fallback(&mut self, o: &Outstanding) {
        self.stats.fallback_after_deadline.record(self.clock.now_ns().saturating_sub(o.deadline_ns).max(0));
        inc(&self.stats.fallback);
        inc(&self.stats.fallback_by_priority[o.priority as usize]);
        if brakes(o.ttc_s, o.offset_m, self.cfg.fallback_ttc_s) {
            inc(&self.stats.fallback_braked);
            self.apply(&o.task_id, Action::Brake, true);
        }
    }

    fn check_deadlines(&mut self) {
        let now = self.clock.now_ns();
        let due: Vec<String> =
            self.outstanding.values().filter(|o| o.deadline_ns < now).map(|o| o.task_id.clone()).collect();
        for id in due {
            if let Some(o) = self.resolve(&id, Resolution::TimedOut) {
                tracing::debug!(task = %id, "deadline passed with no recommendation: fallback");
                self.fallback(&o);
                self.finish(&o);
            }
        }
        self.resolved.prune(now);
    }
}

impl Handler<NoCamera> for RecommendationHandler {
    type Result = ();
    fn handle(&mut self, m: NoCamera, _: &mut Self::Context) {
        NoCameraFallback { track: m.track_id, ttc_s: m.ttc_s }.emit(&self.stats);
        if brakes(m.ttc_s, m.offset_m, self.cfg.fallback_ttc_s) {
            self.apply(&format!("{}/{}/no-camera/{}", self.cfg.vehicle, self.cfg.run, m.track_id), Action::Brake, true);
        }
        self.fusion.do_send(TrackSettled(m.track_id));
    }
}

impl Handler<Caution> for RecommendationHandler {
    type Result = ();
    fn handle(&mut self, m: Caution, _: &mut Self::Context) {
        CautionApplied { caution: &m }.emit(&self.stats);
        self.apply(&format!("{}/{}/caution/{}", self.cfg.vehicle, self.cfg.run, m.watch_id), m.action, false);
    }
}

impl Handler<Outstanding> for RecommendationHandler {
    type Result = ();
    fn handle(&mut self, o: Outstanding, _: &mut Self::Context) {
        if o.refused {
            if let Some(o) = self.resolve(&o.task_id, Resolution::TimedOut) {
                self.fallback(&o);
                self.finish(&o);
            }
        } else {
            self.outstanding.insert(o.task_id.clone(), o);
        }
    }
}

impl StreamHandler<Result<Reply, TransportError>> for RecommendationHandler {
    fn handle(&mut self, reply: Result<Reply, TransportError>, _: &mut Self::Context) {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reply stream error");
                return;
            }
        };
        let rec = match self.cfg.trust.vet(&reply, &reply_address(&self.cfg.vehicle), self.cfg.vehicle.as_str()) {
            Ok(rec) => rec,
            Err(why) => {
                let publisher = reply.publisher.as_deref();
                ReplyRejected { why, correlation_id: &reply.correlation_id, publisher }.emit(&self.stats);
                return;
            }
        };
        let now = self.clock.now_ns();
        let Some(o) = self.outstanding.get(&rec.task_id).cloned() else {
            match self.resolved.get(&rec.task_id) {
                // Its deadline passed first: the fallback already acted.
                Some(Resolution::TimedOut) => inc(&self.stats.stale),
                Some(Resolution::Answered) => inc(&self.stats.duplicate),
                None => inc(&self.stats.unknown),
            }
            return;
        };
        if now > o.deadline_ns {
            self.resolve(&rec.task_id, Resolution::TimedOut);
            inc(&self.stats.stale);
            self.fallback(&o);
            self.finish(&o);
            return;
        }
        self.resolve(&rec.task_id, Resolution::Answered);
        inc(&self.stats.completed);
        inc(&self.stats.completed_by_priority[o.priority as usize]);
        let action = action_from_proto(rec.action());
        inc(&self.stats.by_action[Action::ALL.iter().position(|a| *a == action).unwrap_or(5)]);
        self.stats.latencies.record(now - o.detected_ns);
        self.stats.worker.record(rec.inference_ns);
        if let Ok(mut last) = self.stats.last_recommendation.lock() {
            *last = format!("{} {} ({:.0}%)", action.name(), rec.class().as_str_name(), rec.confidence * 100.0);
        }
        self.telemetry.push(ToLog {
            topic: topics::RECOMMENDATIONS,
            capture_ns: now,
            publish_ns: now,
            envelope: Arc::new(reply.payload),
        });
        self.apply(&rec.task_id, action, false);
        self.finish(&o);
    }
}
