import GallocyCodec
import GallocyRaft
import GallocyStorage

/// What `gallocy log info` prints: the bounds of the log, the hard state, the snapshot in force,
/// the membership and the cluster settings of one data directory.
package struct LogInfo: Sendable, Hashable {
    package var path: String
    package var firstIndex: UInt64
    package var lastIndex: UInt64
    package var lastTerm: UInt64
    package var commitIndex: UInt64
    package var term: UInt64
    /// nil when the member has not voted in `term`.
    package var votedFor: UInt64?
    package var compactedIndex: UInt64
    package var snapshotIndex: UInt64
    package var snapshotTerm: UInt64
    package var snapshotBytes: UInt64
    package var confState: ConfState
    package var settings: ClusterSettings?
    /// Bytes of `data.mdb` in use.
    package var usedBytes: Int

    package init(_ directory: LogDirectory) {
        let storage = directory.storage
        let hardState = storage.hardState
        path = directory.path
        firstIndex = storage.firstIndex
        lastIndex = storage.lastIndex
        lastTerm = storage.lastTerm
        commitIndex = hardState.commit
        term = hardState.term
        votedFor = hardState.vote == 0 ? nil : hardState.vote
        compactedIndex = storage.compactedIndex
        snapshotIndex = storage.snapshot?.metadata.index ?? 0
        snapshotTerm = storage.snapshot?.metadata.term ?? 0
        snapshotBytes = storage.snapshot?.totalSize ?? 0
        confState = storage.confState
        settings = storage.settings
        usedBytes = storage.diskUsage.usedBytes
    }

    /// Every member the directory knows of: voters, learners and outgoing voters, sorted.
    package var members: [UInt64] {
        Array(Set(confState.voters + confState.learners + confState.votersOutgoing)).sorted()
    }

    /// How many entries the log holds.
    package var entryCount: UInt64 { lastIndex >= firstIndex ? lastIndex - firstIndex + 1 : 0 }

    /// The JSON object of `info --json` (CONTRACT.md 1.3): the contract's fields, then extras.
    package var json: JSONValue {
        var object: [String: JSONValue] = [
            "first_index": .uint(firstIndex),
            "last_index": .uint(lastIndex),
            "last_term": .uint(lastTerm),
            "commit_index": .uint(commitIndex),
            "term": .uint(term),
            "voted_for": votedFor.map { .uint($0) } ?? .null,
            "compacted_index": .uint(compactedIndex),
            "snapshot_index": .uint(snapshotIndex),
            "snapshot_term": .uint(snapshotTerm),
            "snapshot_bytes": .uint(snapshotBytes),
            "members": .array(members.map { .uint($0) }),
            "voters": .array(confState.voters.map { .uint($0) }),
            "learners": .array(confState.learners.map { .uint($0) }),
            "entries": .uint(entryCount),
            "data_bytes": .uint(UInt64(usedBytes)),
            "heap_base": settings.map { .string(HexAddress.format($0.heapBase)) } ?? .null,
            "heap_size": settings.map { .uint($0.heapSize) } ?? .null,
            "page_size": settings.map { .uint(UInt64($0.pageSize)) } ?? .null,
            "cluster_id": settings.map { .uint($0.clusterID) } ?? .null,
        ]
        if !confState.votersOutgoing.isEmpty {
            object["voters_outgoing"] = .array(confState.votersOutgoing.map { .uint($0) })
        }
        return .object(object)
    }

    /// The readable form: one `name  value` line per field.
    package var lines: [String] {
        func list(_ ids: [UInt64]) -> String { ids.isEmpty ? "none" : ids.map(String.init).joined(separator: ", ") }
        var rows: [(String, String)] = [
            ("data directory", path),
            (
                "log",
                entryCount == 0
                    ? "empty (after \(compactedIndex))"
                    : "\(firstIndex)...\(lastIndex) (\(entryCount) entries, last term \(lastTerm))"
            ),
            ("commit index", String(commitIndex)),
            ("term", String(term)),
            ("voted for", votedFor.map(String.init) ?? "nobody"),
            (
                "snapshot",
                snapshotIndex == 0 ? "none" : "index \(snapshotIndex), term \(snapshotTerm), \(snapshotBytes) bytes"
            ),
            ("compacted through", String(compactedIndex)),
            ("voters", list(confState.voters)),
            ("learners", list(confState.learners)),
        ]
        if !confState.votersOutgoing.isEmpty { rows.append(("outgoing voters", list(confState.votersOutgoing))) }
        if let settings {
            rows.append(("cluster id", String(settings.clusterID)))
            rows.append(("heap base", HexAddress.format(settings.heapBase)))
            rows.append(
                ("heap size", "\(settings.heapSize) bytes (\(settings.pageCount) pages of \(settings.pageSize))"))
        } else {
            rows.append(("settings", "none: the member has not bootstrapped or joined yet"))
        }
        rows.append(("data.mdb in use", "\(usedBytes) bytes"))
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width) + "  " + $0.1 }
    }
}

extension String {
    /// The string padded with spaces on the right to `length` characters (never truncated).
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
