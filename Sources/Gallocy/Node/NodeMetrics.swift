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
        term = r.makeGauge(name: "gallocy_raft_term", help: "The current Raft term")
        isLeader = r.makeGauge(name: "gallocy_raft_is_leader", help: "1 while this member leads")
        role = r.makeGauge(
            name: "gallocy_raft_role", help: "0 follower, 1 precandidate, 2 candidate, 3 leader, 4 learner")
        commitIndex = r.makeGauge(name: "gallocy_raft_commit_index", help: "The highest committed log index known")
        appliedIndex = r.makeGauge(name: "gallocy_raft_applied_index", help: "The last index applied to the state machine")
        applyLag = r.makeGauge(name: "gallocy_raft_apply_lag", help: "commit_index - applied_index")
        snapshotIndex = r.makeGauge(name: "gallocy_snapshot_index", help: "The index of the snapshot in force")
        syncLatency = r.makeDurationHistogram(
            name: "gallocy_storage_sync_seconds",
            buckets: [.microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(500)],
            help: "Duration of one durable write (one LMDB transaction with its sync)")
        entriesPersisted = r.makeCounter(name: "gallocy_raft_entries_persisted_total", help: "Log entries written")
        entriesReplicated = r.makeCounter(
            name: "gallocy_raft_entries_replicated_total", help: "Entries sent to followers in appends")
        bytesReplicated = r.makeCounter(
            name: "gallocy_raft_bytes_replicated_total", help: "Entry payload bytes sent to followers")
        snapshotsTaken = r.makeCounter(name: "gallocy_snapshots_taken_total", help: "Snapshots taken locally")
        snapshotsInstalled = r.makeCounter(
            name: "gallocy_snapshots_installed_total", help: "Snapshots received from a leader and installed")
        elections = r.makeCounter(name: "gallocy_raft_elections_total", help: "Elections this member started")
        proposals = r.makeCounter(name: "gallocy_proposals_total", help: "Client commands proposed (retries included)")
    }

    package func text() -> String { registry.emitToString() }
}
