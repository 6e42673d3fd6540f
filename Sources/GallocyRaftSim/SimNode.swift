import GallocyRaft

/// One simulated member: a Raft core (absent while crashed), its durable storage (which
/// survives crashes), and its state machine (rebuilt from the snapshot on restart).
public final class SimNode {
    public let id: NodeID
    public internal(set) var raft: RaftNode?
    public let storage: MemoryStorage
    /// The state machine: the ids of the applied proposals, in order.
    public internal(set) var applied: [UInt64] = []
    public internal(set) var appliedIndex: UInt64 = 0
    /// A Ready whose durable write has not completed yet (a crash loses it).
    var pendingReady: Ready?
    var appliedSinceSnapshot = 0
    var restarts = 0
    /// The highest commit index seen on this member in its current life.
    var lastCommitted: UInt64 = 0
    var lastRecordedCommit: UInt64 = 0

    init(id: NodeID, confState: ConfState) {
        self.id = id
        storage = MemoryStorage(confState: confState)
    }

    public var isUp: Bool { raft != nil }

    static func encodeState(_ ids: [UInt64]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 8)
        for id in ids { out += bytes(id) }
        return out
    }

    static func decodeState(_ data: [UInt8]) -> [UInt64] {
        stride(from: 0, to: data.count - data.count % 8, by: 8).map { value(data[$0..<$0 + 8]) }
    }

    static func bytes(_ v: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }

    static func value(_ b: ArraySlice<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for (i, byte) in b.enumerated() { v |= UInt64(byte) << (8 * UInt64(i)) }
        return v
    }
}
