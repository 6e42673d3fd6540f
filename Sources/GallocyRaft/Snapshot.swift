/// A whole snapshot as the host's storage holds it: the state machine's image as of
/// `metadata.index`. The core only forwards its bytes, in chunks, to followers that are behind.
public struct Snapshot: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }

    public var isEmpty: Bool { metadata.index == 0 }
}

/// A membership change, carried by an entry of kind `.confChange`. Single-server changes: see
/// docs/raft.md for why.
public struct ConfChange: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        case addVoter = 1
        case addLearner = 2
        case remove = 3
    }

    public var kind: Kind
    public var node: NodeID
    /// Opaque bytes for the host, carried in the same entry (the engine puts the new member's
    /// peer address here, so every member learns it from the log). The core never reads it.
    public var context: [UInt8]

    public init(_ kind: Kind, node: NodeID, context: [UInt8] = []) {
        self.kind = kind
        self.node = node
        self.context = context
    }

    /// Nine bytes: the kind, then the node id in little-endian order; then the context, if any
    /// (so a change without context encodes exactly as before the context existed).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [kind.rawValue]
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: node >> UInt64(shift))) }
        out.append(contentsOf: context)
        return out
    }

    /// Nil for anything that is not what `encoded()` produces (bytes after the ninth are the context).
    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        var node: UInt64 = 0
        for i in 0..<8 { node |= UInt64(bytes[1 + i]) << UInt64(8 * i) }
        guard node != 0 else { return nil }
        self.kind = kind
        self.node = node
        self.context = Array(bytes[9...])
    }
}

extension ConfState {
    /// The configuration after `change`; nil if the change does not apply (already done, or
    /// removing someone absent).
    public func applying(_ change: ConfChange) -> ConfState? {
        var next = self
        next.votersOutgoing = []
        switch change.kind {
        case .addVoter:
            guard !voters.contains(change.node) else { return nil }
            next.learners.removeAll { $0 == change.node }
            next.voters.append(change.node)
        case .addLearner:
            guard !voters.contains(change.node), !learners.contains(change.node) else { return nil }
            next.learners.append(change.node)
        case .remove:
            guard voters.contains(change.node) || learners.contains(change.node) else { return nil }
            next.voters.removeAll { $0 == change.node }
            next.learners.removeAll { $0 == change.node }
        }
        next.voters.sort()
        next.learners.sort()
        return next
    }
}

/// A linearizable read that is ready: once the host has applied up to `index`, it may answer
/// the read identified by `context`.
public struct ReadState: Sendable, Hashable {
    public var index: UInt64
    public var context: [UInt8]

    public init(index: UInt64, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}
