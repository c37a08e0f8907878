//! Every series Vigil serves, declared once: where it comes from in the report, its
//! name, kind and help. This table is the metrics reference (`deploy/grafana/` and
//! `deploy/prometheus.yml` use these names; a test checks they exist here).

use super::Kind::{Counter, Gauge, Histogram};
use super::{Catalogue, Series};

/// The vehicle's task latency histogram, fed from its latency store.
pub const DETECT_TO_RECOMMEND_SECONDS: &str = "vigil_vehicle_detect_to_recommend_seconds";

const fn s(path: &'static str, name: &'static str, kind: super::Kind, help: &'static str) -> Series {
    Series { path, name, kind, help }
}

/// `vigil vehicle`.
pub const VEHICLE: Catalogue = Catalogue {
    series: &[
        s(
            "",
            DETECT_TO_RECOMMEND_SECONDS,
            Histogram,
            "Radar scan captured to recommendation applied (or fallback), per obstacle task.",
        ),
        s(
            "/live_view/offered",
            "vigil_live_view_offered_total",
            Counter,
            "Records offered to the Foxglove live view while a client was connected.",
        ),
        s(
            "/live_view/dropped",
            "vigil_live_view_dropped_total",
            Counter,
            "Records the live view dropped, the oldest first, because it fell behind.",
        ),
        s(
            "/live_view/messages",
            "vigil_live_view_messages_total",
            Counter,
            "Foxglove messages the live view sent to its channels.",
        ),
        s(
            "/live_view/clients_peak",
            "vigil_live_view_clients_peak",
            Gauge,
            "Most live-view clients connected at once.",
        ),
        s(
            "/frames/{stream}",
            "vigil_vehicle_frames_ingested_total",
            Counter,
            "Sensor frames ingested from the bus, per stream.",
        ),
        s(
            "/gaps",
            "vigil_vehicle_frame_gaps_total",
            Counter,
            "Sequence numbers missing at ingest: frames the bus never delivered.",
        ),
        s(
            "/rejected_frames",
            "vigil_vehicle_frames_rejected_total",
            Counter,
            "Frames dropped at ingest: undecodable, wrong stream, or another vehicle's.",
        ),
        s(
            "/tasks/raised",
            "vigil_vehicle_tasks_raised_total",
            Counter,
            "Obstacle tasks raised: threats a worker was asked about.",
        ),
        s("/tasks/published", "vigil_vehicle_tasks_published_total", Counter, "Obstacle tasks the broker confirmed."),
        s(
            "/tasks/refused",
            "vigil_vehicle_tasks_refused_total",
            Counter,
            "Tasks the broker refused or could not take: they fell back at once.",
        ),
        s(
            "/tasks/completed",
            "vigil_vehicle_tasks_completed_total",
            Counter,
            "Tasks answered by a worker inside their deadline.",
        ),
        s(
            "/tasks/fallback",
            "vigil_vehicle_tasks_fallback_total",
            Counter,
            "Tasks that fell back to the vehicle's own decision (deadline missed or refused).",
        ),
        s("/tasks/fallback_braked", "vigil_vehicle_fallback_brakes_total", Counter, "Fallbacks that braked."),
        s(
            "/tasks/outstanding",
            "vigil_vehicle_tasks_outstanding",
            Gauge,
            "Tasks published and not yet answered or fallen back.",
        ),
        s(
            "/tasks/stale_replies",
            "vigil_vehicle_replies_stale_total",
            Counter,
            "Replies that came after their task's deadline: ignored.",
        ),
        s(
            "/tasks/duplicate_replies",
            "vigil_vehicle_replies_duplicate_total",
            Counter,
            "Second replies to an answered task: ignored.",
        ),
        s(
            "/tasks/unknown_replies",
            "vigil_vehicle_replies_unknown_total",
            Counter,
            "Replies to no task of this vehicle: ignored.",
        ),
        s(
            "/tasks/rejected_replies/{reason}",
            "vigil_vehicle_replies_rejected_total",
            Counter,
            "Replies refused by the trust checks, per reason.",
        ),
        s(
            "/recommendations/by_action/{action}",
            "vigil_vehicle_recommendations_total",
            Counter,
            "Recommendations applied, per action.",
        ),
        s("/controls_sent", "vigil_vehicle_controls_sent_total", Counter, "Commands sent to the ego controllers."),
        s(
            "/no_camera_fallbacks",
            "vigil_vehicle_no_camera_fallbacks_total",
            Counter,
            "Threats that fell back at once: no fresh camera frame or box.",
        ),
        s("/log_errors", "vigil_vehicle_log_errors_total", Counter, "Telemetry records the log refused for good."),
        s("/telemetry/queued", "vigil_vehicle_spool_records", Gauge, "Telemetry records waiting for the log."),
        s("/telemetry/queued_bytes", "vigil_vehicle_spool_bytes", Gauge, "Bytes of telemetry waiting for the log."),
        s(
            "/telemetry/dropped",
            "vigil_vehicle_spool_dropped_total",
            Counter,
            "Telemetry records dropped because the spool was full.",
        ),
        s(
            "/telemetry/peak_bytes",
            "vigil_vehicle_spool_peak_bytes",
            Gauge,
            "The most bytes the memory spool held at once.",
        ),
        s(
            "/telemetry/spilled",
            "vigil_vehicle_spool_spilled_total",
            Counter,
            "Telemetry records written to the disk spool.",
        ),
        s(
            "/telemetry/peak_disk_bytes",
            "vigil_vehicle_spool_peak_disk_bytes",
            Gauge,
            "The most bytes the disk spool held at once.",
        ),
        s(
            "/telemetry/log_waits",
            "vigil_vehicle_log_waits_total",
            Counter,
            "Times the log pushed back and the forwarder waited.",
        ),
        s("/brokers/kafka/sent", "vigil_vehicle_kafka_sent_total", Counter, "Records sent to Kafka."),
        s("/brokers/kafka/delivered", "vigil_vehicle_kafka_delivered_total", Counter, "Records Kafka acknowledged."),
        s("/brokers/kafka/retried", "vigil_vehicle_kafka_retried_total", Counter, "Failed deliveries re-sent."),
        s(
            "/brokers/kafka/queue_full_waits",
            "vigil_vehicle_kafka_queue_full_waits_total",
            Counter,
            "Times the producer queue was full and the sender waited.",
        ),
        s(
            "/brokers/kafka/claim_checked",
            "vigil_vehicle_kafka_claim_checked_total",
            Counter,
            "Camera frames the log moved to the frame store.",
        ),
        s("/brokers/kafka/bytes", "vigil_vehicle_kafka_sent_bytes_total", Counter, "Bytes sent to Kafka."),
        s(
            "/brokers/kafka/queue_fill",
            "vigil_vehicle_kafka_producer_queue_messages",
            Gauge,
            "Messages queued or in flight in the Kafka producer.",
        ),
        s(
            "/brokers/kafka/queue_max",
            "vigil_vehicle_kafka_producer_queue_limit_messages",
            Gauge,
            "The Kafka producer queue's bound.",
        ),
        s(
            "/brokers/amqp/retried",
            "vigil_vehicle_amqp_retried_total",
            Counter,
            "Failed task attempts sent to a delay queue.",
        ),
        s(
            "/brokers/amqp/recoveries",
            "vigil_vehicle_amqp_recoveries_total",
            Counter,
            "RabbitMQ connection recoveries waited out.",
        ),
        s(
            "/brokers/amqp/refused_full",
            "vigil_vehicle_amqp_refused_full_total",
            Counter,
            "Tasks RabbitMQ refused: the task queue was full.",
        ),
        s(
            "/brokers/amqp/publish_errors",
            "vigil_vehicle_amqp_publish_errors_total",
            Counter,
            "Task publishes that failed.",
        ),
        s(
            "/brokers/amqp/queue_depth",
            "vigil_vehicle_task_queue_depth",
            Gauge,
            "Tasks waiting in the RabbitMQ task queue.",
        ),
        s("/brokers/amqp/dead_lettered", "vigil_vehicle_amqp_dead_lettered_total", Counter, "Tasks dead-lettered."),
        s(
            "/brokers/frames/stored",
            "vigil_vehicle_frames_stored_total",
            Counter,
            "Camera frames written to the frame store.",
        ),
        s(
            "/brokers/frames/bytes",
            "vigil_vehicle_frame_store_bytes_total",
            Counter,
            "Bytes written to the frame store.",
        ),
        s("/wall_seconds", "vigil_vehicle_uptime_seconds", Gauge, "Seconds since the vehicle process started."),
    ],
    not_served: &[
        ("/latency_ms", "percentiles of what vigil_vehicle_detect_to_recommend_seconds holds"),
        ("/recommendations/count", "the sum of vigil_vehicle_recommendations_total"),
    ],
};

/// `vigil worker`.
pub const WORKER: Catalogue = Catalogue {
    series: &[
        s(
            "",
            vigil_worker::TASK_SECONDS,
            Histogram,
            "Task taken to its reply confirmed by the broker: fetch, crop, inference, decide, publish.",
        ),
        s("", vigil_worker::REPLY_PUBLISH_SECONDS, Histogram, "Reply publish to the broker's confirm."),
        s("/workers", "vigil_worker_actors", Gauge, "Worker actors in this process."),
        s("/taken", "vigil_worker_tasks_taken_total", Counter, "Tasks taken from the queue (redeliveries included)."),
        s(
            "/redelivered",
            "vigil_worker_tasks_redelivered_total",
            Counter,
            "Tasks taken again after another worker failed them.",
        ),
        s("/answered", "vigil_worker_tasks_answered_total", Counter, "Tasks answered with a recommendation."),
        s(
            "/expired",
            "vigil_worker_tasks_expired_total",
            Counter,
            "Tasks found expired when taken: dead-lettered as expired.",
        ),
        s(
            "/rejected",
            "vigil_worker_tasks_retried_total",
            Counter,
            "Attempts that could not be processed: requeued for a retry with backoff.",
        ),
        s(
            "/duplicates",
            "vigil_worker_tasks_duplicate_total",
            Counter,
            "Redeliveries of a task this process answered: acked, not reprocessed.",
        ),
        s("/panics", "vigil_worker_panics_total", Counter, "Panics caught while processing (the task was requeued)."),
        s("/restarts", "vigil_worker_restarts_total", Counter, "Worker actors restarted by their supervisor."),
        s(
            "/malformed",
            "vigil_worker_tasks_malformed_total",
            Counter,
            "Tasks that can never be processed: dead-lettered.",
        ),
        s(
            "/untrusted",
            "vigil_worker_tasks_untrusted_total",
            Counter,
            "Tasks from a publisher with no right to send them: dead-lettered.",
        ),
        s(
            "/settle_failures",
            "vigil_worker_settle_failures_total",
            Counter,
            "Acks and nacks that failed (the broker redelivers).",
        ),
        s("/amqp/delivered", "vigil_worker_amqp_delivered_total", Counter, "Deliveries from RabbitMQ."),
        s("/amqp/acked", "vigil_worker_amqp_acked_total", Counter, "Deliveries acknowledged."),
        s("/amqp/retried", "vigil_worker_amqp_retried_total", Counter, "Failed attempts sent to a delay queue."),
        s("/amqp/dead_lettered", "vigil_worker_amqp_dead_lettered_total", Counter, "Deliveries dead-lettered."),
        s("/amqp/expired", "vigil_worker_amqp_expired_total", Counter, "Deliveries expired in the queue."),
        s(
            "/amqp/recoveries",
            "vigil_worker_amqp_recoveries_total",
            Counter,
            "Connection recoveries and consumer interruptions waited out.",
        ),
        s("/amqp/publish_errors", "vigil_worker_amqp_publish_errors_total", Counter, "Reply publishes that failed."),
        s(
            "/amqp/retry_failed",
            "vigil_worker_amqp_retry_failed_total",
            Counter,
            "Retry publishes that failed (dead-lettered instead).",
        ),
        s(
            "/amqp/settle_requeued",
            "vigil_worker_amqp_settle_requeued_total",
            Counter,
            "Deliveries handed back because nothing could be published for them.",
        ),
        s(
            "/amqp/settle_failed",
            "vigil_worker_amqp_settle_failed_total",
            Counter,
            "Acks and nacks RabbitMQ did not take.",
        ),
        s("/amqp/queue_depth", "vigil_worker_task_queue_depth", Gauge, "Tasks waiting in the RabbitMQ task queue."),
        s("/wall_seconds", "vigil_worker_uptime_seconds", Gauge, "Seconds since the worker process started."),
    ],
    not_served: &[],
};

/// `vigil monitor`.
pub const MONITOR: Catalogue = Catalogue {
    series: &[
        s(
            "",
            vigil_brokers::monitor::INGEST_LATENCY_SECONDS,
            Histogram,
            "Capture to publish on the vehicle, telemetry.",
        ),
        s(
            "",
            vigil_brokers::monitor::END_TO_END_LATENCY_SECONDS,
            Histogram,
            "Frame capture to the recommendation back at the vehicle.",
        ),
        s(
            "/vehicles/{vehicle}/{stream}/count",
            "vigil_monitor_messages_total",
            Counter,
            "Telemetry messages read, per vehicle and stream.",
        ),
        s(
            "/vehicles/{vehicle}/{stream}/bytes",
            "vigil_monitor_bytes_total",
            Counter,
            "Telemetry bytes read (as stored in Kafka).",
        ),
        s(
            "/vehicles/{vehicle}/{stream}/rate_hz",
            "vigil_monitor_stream_rate_hz",
            Gauge,
            "Messages per second of capture time.",
        ),
        s("/tasks_seen", "vigil_monitor_tasks_total", Counter, "Obstacle tasks in the audit log."),
        s("/tasks_answered", "vigil_monitor_tasks_answered_total", Counter, "Tasks whose recommendation was read."),
        s("/by_action/{action}", "vigil_monitor_recommendations_total", Counter, "Recommendations read, per action."),
        s(
            "/by_class/{class}",
            "vigil_monitor_recommended_class_total",
            Counter,
            "Recommendations per predicted class.",
        ),
        s(
            "/drift/class_tvd",
            "vigil_monitor_class_drift_tvd",
            Gauge,
            "Predicted classes vs the training mix: total variation distance (0..1).",
        ),
        s(
            "/drift/mean_confidence",
            "vigil_monitor_mean_confidence",
            Gauge,
            "Mean confidence of the recommendations read.",
        ),
        s(
            "/drift/low_confidence_share",
            "vigil_monitor_low_confidence_share",
            Gauge,
            "Share of predictions below 0.6.",
        ),
        s("/lag/{topic}", "vigil_monitor_consumer_lag", Gauge, "Records behind the high watermark, per topic."),
        s("/decode_errors", "vigil_monitor_decode_errors_total", Counter, "Records that did not decode."),
    ],
    not_served: &[
        ("/ingest_latency_ms", "percentiles of vigil_monitor_ingest_latency_seconds"),
        ("/end_to_end_latency_ms", "percentiles of vigil_monitor_end_to_end_latency_seconds"),
        ("/recommendations", "the sum of vigil_monitor_recommendations_total"),
        ("/total_lag", "the sum of vigil_monitor_consumer_lag"),
    ],
};
