import Prometheus

/// The member's Prometheus registry and the engine's own series. The HTTP server registers
/// its request counters in the same registry (through a `PrometheusMetricsFactory`).
package struct NodeMetrics: Sendable {
    package let registry: PrometheusCollectorRegistry
    let term: Gauge
    let isLeader: Gauge
    let role: Gauge
    let commitIndex: Gauge
    let appliedIndex: Gauge
    let applyLag: Gauge
    let snapshotIndex: Gauge
    let syncLatency: DurationHistogram
    let entriesPersisted: Counter
    let entriesReplicated: Counter
    let bytesReplicated: Counter
    let snapshotsTaken: Counter
    let snapshotsInstalled: Counter
    let elections: Counter
    let proposals: Counter

    package init() {
        let r = PrometheusCollectorRegistry()
        registry = r
        term = r.makeGauge(descriptor: d("gallocy_raft_term", "The current Raft term"))
        isLeader = r.makeGauge(descriptor: d("gallocy_raft_is_leader", "1 while this member leads"))
        role = r.makeGauge(descriptor: d("gallocy_raft_role", "0 follower, 1 precandidate, 2 candidate, 3 leader, 4 learner"))
        commitIndex = r.makeGauge(descriptor: d("gallocy_raft_commit_index", "The highest committed log index known"))
        appliedIndex = r.makeGauge(descriptor: d("gallocy_raft_applied_index", "The last index applied to the state machine"))
        applyLag = r.makeGauge(descriptor: d("gallocy_raft_apply_lag", "commit_index - applied_index"))
        snapshotIndex = r.makeGauge(descriptor: d("gallocy_snapshot_index", "The index of the snapshot in force"))
        syncLatency = r.makeDurationHistogram(
            descriptor: d(
                "gallocy_storage_sync_seconds",
                "Duration of one durable write (one LMDB transaction with its sync)"),
            buckets: [.microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(500)])
        entriesPersisted = r.makeCounter(descriptor: d("gallocy_raft_entries_persisted_total", "Log entries written"))
        entriesReplicated = r.makeCounter(descriptor: d("gallocy_raft_entries_replicated_total", "Entries sent to followers in appends"))
        bytesReplicated = r.makeCounter(descriptor: d("gallocy_raft_bytes_replicated_total", "Entry payload bytes sent to followers"))
        snapshotsTaken = r.makeCounter(descriptor: d("gallocy_snapshots_taken_total", "Snapshots taken locally"))
        snapshotsInstalled = r.makeCounter(descriptor: d("gallocy_snapshots_installed_total", "Snapshots received from a leader and installed"))
        elections = r.makeCounter(descriptor: d("gallocy_raft_elections_total", "Elections this member started"))
        proposals = r.makeCounter(descriptor: d("gallocy_proposals_total", "Client commands proposed (retries included)"))
    }

    package func text() -> String { registry.emitToString() }
}

/// A metric's name and help text (no unit suffix: the names carry theirs).
private func d(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
}
