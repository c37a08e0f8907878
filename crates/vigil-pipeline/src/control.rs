//! The ego controller: how an applied recommendation moves the simulated vehicle.

use std::collections::HashMap;

use vigil_core::policy::Action;
use vigil_core::{Nanos, VehicleId};
use vigil_sim::VehicleSim;
use vigil_sim::scenario::Road;
use vigil_sim::world::{EgoControl, World};
use vigil_vehicle::node::ControlCommand;

/// Translates an applied action into an ego command (the vehicle's controller).
pub fn control_for(action: Action, world: &World, road: &Road) -> Option<EgoControl> {
    let c = world.ego.control;
    let spec = &world.ego.spec;
    let w = road.lane_width_m;
    let lane_of = |y: f64| (y / w).round();
    match action {
        Action::BrakeHard => Some(EgoControl { target_speed: 0.0, decel: spec.max_decel_mps2, ..c }),
        Action::Brake => Some(EgoControl { target_speed: 0.0, decel: (0.7 * spec.max_decel_mps2).max(c.decel), ..c }),
        Action::SlowDown => {
            let target = 0.5 * spec.speed_mps;
            (c.target_speed > target).then_some(EgoControl {
                target_speed: target,
                decel: (0.4 * spec.max_decel_mps2).max(c.decel),
                ..c
            })
        }
        Action::SteerLeft | Action::SteerRight => {
            let side = if action == Action::SteerLeft { 1.0 } else { -1.0 };
            let lane = lane_of(c.target_y) + side;
            (lane >= 0.0 && lane < road.lanes as f64).then_some(EgoControl { target_y: lane * w, ..c })
        }
        Action::Continue => None,
    }
}

/// Applies every pending command decided at or before `until` (vehicle clock), each at
/// its own time: the world is advanced to that instant first.
pub fn apply_due(
    sims: &mut [VehicleSim],
    pending: &mut Vec<ControlCommand>,
    index_of: &HashMap<VehicleId, usize>,
    until: Nanos,
    start_ns: Nanos,
    road: &Road,
) {
    pending.sort_by_key(|c| c.at_ns);
    let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|c| c.at_ns <= until);
    *pending = later;
    for c in due {
        let Some(&i) = index_of.get(&c.vehicle) else { continue };
        let world = &mut sims[i].world;
        world.advance_to(c.at_ns - start_ns);
        if let Some(control) = control_for(c.action, world, road) {
            tracing::debug!(vehicle = %c.vehicle, action = c.action.name(), t = world.time_ns, "applied");
            world.command(control);
        }
    }
}
