//! Metric names. Dashboards (`dashboards/earshot.json`) and alert rules
//! (`dashboards/earshot.rules.yml`) use these; `tests/dashboards.rs` checks they exist.

pub const CAPTURE_FRAMES_RECEIVED: &str = "earshot_capture_frames_received_total";
pub const CAPTURE_FRAMES_DROPPED: &str = "earshot_capture_frames_dropped_total";
pub const CAPTURE_CALLBACKS: &str = "earshot_capture_callbacks_total";
pub const CAPTURE_STREAM_ERRORS: &str = "earshot_capture_stream_errors_total";
pub const CAPTURE_RECONNECTS: &str = "earshot_capture_reconnects_total";
pub const CAPTURE_STATE: &str = "earshot_capture_state";
pub const CAPTURE_LAST_CALLBACK_AGE: &str = "earshot_capture_last_callback_age_seconds";

pub const INPUT_RMS: &str = "earshot_input_rms_dbfs";
pub const INPUT_PEAK: &str = "earshot_input_peak_dbfs";
pub const INPUT_CLIPPED: &str = "earshot_input_clipped_samples_total";
pub const NO_SIGNAL: &str = "earshot_no_signal";

pub const PIPELINE_WINDOWS: &str = "earshot_pipeline_windows_processed_total";
pub const PIPELINE_EMBED_SECONDS: &str = "earshot_pipeline_embed_seconds";
pub const PIPELINE_LAG: &str = "earshot_pipeline_lag_seconds";
pub const PIPELINE_SHED: &str = "earshot_pipeline_windows_shed_total";
pub const PIPELINE_QUEUE_DEPTH: &str = "earshot_pipeline_queue_depth";

pub const SCORE: &str = "earshot_score";
pub const SCORE_THRESHOLD: &str = "earshot_score_threshold";
pub const ANOMALY_ACTIVE: &str = "earshot_anomaly_active";
pub const ANOMALY_EVENTS: &str = "earshot_anomaly_events_total";
/// Normal memory swapped in live after `earshot feedback` changed a monitor's profile.
pub const PROFILE_MEMORY_RELOADS: &str = "earshot_profile_memory_reloads_total";

pub const INDEX_QUERIES: &str = "earshot_index_queries_total";
pub const INDEX_FAILURES: &str = "earshot_index_query_failures_total";
pub const INDEX_DEGRADED: &str = "earshot_index_degraded";
pub const INDEX_BREAKER: &str = "earshot_index_breaker_state";
pub const INDEX_QUERY_SECONDS: &str = "earshot_index_query_seconds";
pub const INDEX_REFUSED: &str = "earshot_index_key_refused";

pub const UPTIME: &str = "earshot_uptime_seconds";
pub const BUILD_INFO: &str = "earshot_build_info";
pub const MONITOR_UP: &str = "earshot_monitor_up";
pub const MONITOR_INFO: &str = "earshot_monitor_info";
pub const CONFIG_RESTART_REQUIRED: &str = "earshot_config_restart_required";

pub const CATALOG_ENTRIES: &str = "earshot_catalog_entries";
pub const CATALOG_REFUSED: &str = "earshot_catalog_refused";
pub const CATALOG_SYNCED: &str = "earshot_catalog_last_sync_timestamp_seconds";
pub const CATALOG_SYNC_FAILURES: &str = "earshot_catalog_sync_failures_total";
pub const SOUNDS_LIKE_EVENTS: &str = "earshot_sounds_like_events_total";

pub const EVENTS_WRITTEN: &str = "earshot_events_written_total";
pub const EVENT_WRITE_FAILURES: &str = "earshot_event_write_failures_total";
pub const EVENTS_SKIPPED: &str = "earshot_events_skipped_total";

/// Every name above, for tests and documentation.
pub const ALL: &[&str] = &[
    CAPTURE_FRAMES_RECEIVED,
    CAPTURE_FRAMES_DROPPED,
    CAPTURE_CALLBACKS,
    CAPTURE_STREAM_ERRORS,
    CAPTURE_RECONNECTS,
    CAPTURE_STATE,
    CAPTURE_LAST_CALLBACK_AGE,
    INPUT_RMS,
    INPUT_PEAK,
    INPUT_CLIPPED,
    NO_SIGNAL,
    PIPELINE_WINDOWS,
    PIPELINE_EMBED_SECONDS,
    PIPELINE_LAG,
    PIPELINE_SHED,
    PIPELINE_QUEUE_DEPTH,
    SCORE,
    SCORE_THRESHOLD,
    ANOMALY_ACTIVE,
    ANOMALY_EVENTS,
    PROFILE_MEMORY_RELOADS,
    INDEX_QUERIES,
    INDEX_FAILURES,
    INDEX_DEGRADED,
    INDEX_BREAKER,
    INDEX_QUERY_SECONDS,
    INDEX_REFUSED,
    UPTIME,
    BUILD_INFO,
    MONITOR_UP,
    MONITOR_INFO,
    CONFIG_RESTART_REQUIRED,
    CATALOG_ENTRIES,
    CATALOG_REFUSED,
    CATALOG_SYNCED,
    CATALOG_SYNC_FAILURES,
    SOUNDS_LIKE_EVENTS,
    EVENTS_WRITTEN,
    EVENT_WRITE_FAILURES,
    EVENTS_SKIPPED,
];
