import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log diff --data A --data B`: where two members' logs first differ, and where the
/// states they rebuild (page table and heap, replayed with the state machine) first differ.
///
/// The states are compared only where they can first diverge: members that apply the same
/// entries to the same state reach the same state (the state machine is deterministic), so the
/// replays start from the later of the two snapshots, are compared there, and then again only
/// after each index whose entries differ. That costs two replays and a few digests, not a digest
/// per entry.
package struct LogDiff {
    /// Two entries at the same index that differ (or one of them is missing).
    package struct EntryDifference: Sendable, Hashable {
        package var index: UInt64
        /// nil when that log has no entry at `index`.
        package var a: LogEntryDescription?
        package var b: LogEntryDescription?
    }

    /// The first index after which the replayed states differ.
    package struct StateDifference: Sendable, Hashable {
        package var index: UInt64
        package var a: StateMachineDigest
        package var b: StateMachineDigest
        /// The first line of the canonical page table dumps that differs, if the tables differ.
        package var pageTableLine: (a: String, b: String)?
        /// The dump's `table <name> (<columns>)` line of the table that row is in.
        package var pageTableHeader: String?
        /// Heap pages whose bytes differ (at most 16).
        package var heapPages: [Int]

        package static func == (l: Self, r: Self) -> Bool {
            l.index == r.index && l.a == r.a && l.b == r.b && l.heapPages == r.heapPages
                && l.pageTableLine?.a == r.pageTableLine?.a && l.pageTableLine?.b == r.pageTableLine?.b
        }
        package func hash(into hasher: inout Hasher) { hasher.combine(index) }
    }

    package var pathA: String
    package var pathB: String
    /// The overlap of the two logs that was compared entry by entry.
    package var comparedEntries: ClosedRange<UInt64>?
    package var entryDifference: EntryDifference?
    /// Every index of the overlap whose entries differ (at most `maxDifferences`).
    package var differingIndices: [UInt64]
    /// The index the states were compared at, and where the comparison started.
    package var stateTarget: UInt64?
    package var stateStart: UInt64?
    package var stateDifference: StateDifference?
    /// Why the states were not compared, when they were not.
    package var stateNote: String?
    package var finalDigest: StateMachineDigest?

    static let maxDifferences = 100_000

    package var identical: Bool { entryDifference == nil && stateDifference == nil }

    package init(_ a: LogDirectory, _ b: LogDirectory, to target: UInt64? = nil) throws(LogToolError) {
        pathA = a.path
        pathB = b.path
        differingIndices = []
        let lo = max(a.storage.firstIndex, b.storage.firstIndex)
        let hi = min(a.storage.lastIndex, b.storage.lastIndex)
        if lo <= hi {
            comparedEntries = lo...hi
            try compareEntries(a, b, from: lo, through: hi)
        }
        if entryDifference == nil, lo <= hi, a.storage.lastIndex != b.storage.lastIndex {
            // Equal where both have entries: the shorter log simply ends earlier.
            let index = hi + 1
            let settingsA = a.storage.settings
            let settingsB = b.storage.settings
            let entryA = index <= a.storage.lastIndex ? try Self.describe(a, index, settingsA) : nil
            let entryB = index <= b.storage.lastIndex ? try Self.describe(b, index, settingsB) : nil
            entryDifference = EntryDifference(index: index, a: entryA, b: entryB)
        }
        try compareStates(a, b, target: target)
    }

    private static func describe(_ directory: LogDirectory, _ index: UInt64, _ settings: ClusterSettings?)
        throws(LogToolError) -> LogEntryDescription
    {
        var found: LogEntryDescription?
        try directory.forEachEntry(from: index, through: index) { (entry, size) throws(LogToolError) in
            found = LogEntryDescription(entry, storedSize: size, settings: settings)
        }
        guard let found else { throw LogToolError(.outOfRange, "entry \(index) is not in \(directory.path)") }
        return found
    }

    private mutating func compareEntries(_ a: LogDirectory, _ b: LogDirectory, from lo: UInt64, through hi: UInt64)
        throws(LogToolError)
    {
        var next = lo
        let batch: UInt64 = 2048
        while next <= hi {
            let end = min(hi, next + batch - 1)
            let left: [Entry]
            let right: [Entry]
            do {
                left = try a.storage.entries(from: next, to: end + 1)
            } catch {
                throw LogToolError(.corrupted, "\(a.path): \(error.message)")
            }
            do {
                right = try b.storage.entries(from: next, to: end + 1)
            } catch {
                throw LogToolError(.corrupted, "\(b.path): \(error.message)")
            }
            for (x, y) in zip(left, right) where x != y {
                if entryDifference == nil {
                    entryDifference = EntryDifference(
                        index: x.index,
                        a: LogEntryDescription(x, storedSize: EntryCodec.encode(x).count, settings: a.storage.settings),
                        b: LogEntryDescription(y, storedSize: EntryCodec.encode(y).count, settings: b.storage.settings))
                }
                if differingIndices.count < Self.maxDifferences { differingIndices.append(x.index) }
            }
            next = end + 1
        }
    }

    private mutating func compareStates(_ a: LogDirectory, _ b: LogDirectory, target: UInt64?) throws(LogToolError) {
        let to = target ?? min(a.commitIndex, b.commitIndex)
        let start = max(try LogReplay.startIndex(of: a), try LogReplay.startIndex(of: b))
        guard to >= start else {
            stateNote =
                "the states were not compared: index \(to) is before the later snapshot (\(start)); "
                + "pass --to with an index from \(start) on"
            return
        }
        for directory in [a, b] where to > directory.storage.lastIndex {
            stateNote =
                "the states were not compared at \(to): \(directory.path) holds entries only up to \(directory.storage.lastIndex)"
            return
        }
        stateTarget = to
        stateStart = start
        var left = try LogReplay(a, to: start)
        var right = try LogReplay(b, to: start)
        if let difference = try Self.difference(left, right) {
            stateDifference = difference
            return
        }
        for index in differingIndices where index > start && index <= to {
            try left.advance(a, through: index)
            try right.advance(b, through: index)
            if let difference = try Self.difference(left, right) {
                stateDifference = difference
                return
            }
        }
        try left.advance(a, through: to)
        try right.advance(b, through: to)
        if let difference = try Self.difference(left, right) {
            stateDifference = difference
            return
        }
        finalDigest = try left.digest()
    }

    /// nil when both replays hold the same state.
    private static func difference(_ left: LogReplay, _ right: LogReplay) throws(LogToolError) -> StateDifference? {
        let x = try left.digest()
        let y = try right.digest()
        guard x != y else { return nil }
        var line: (String, String)?
        var tableHeader: String?
        if x.pageTable != y.pageTable {
            do {
                let dumpA = try left.machine.pageTable.canonicalDump().split(
                    separator: "\n", omittingEmptySubsequences: false)
                let dumpB = try right.machine.pageTable.canonicalDump().split(
                    separator: "\n", omittingEmptySubsequences: false)
                for k in 0..<max(dumpA.count, dumpB.count) {
                    let la = k < dumpA.count ? String(dumpA[k]) : "(end of dump)"
                    let lb = k < dumpB.count ? String(dumpB[k]) : "(end of dump)"
                    if la != lb {
                        // Name the table the row belongs to: the dump's last `table` line before it.
                        let header = dumpA[..<min(k, dumpA.count)].last { $0.hasPrefix("table ") }.map(String.init)
                        line = (la, lb)
                        tableHeader = header
                        break
                    }
                }
            } catch {
                throw LogToolError(error, while: "dumping the page tables")
            }
        }
        var pages: [Int] = []
        if x.heap != y.heap, let heapA = left.machine.heap, let heapB = right.machine.heap,
            heapA.pageSize == heapB.pageSize
        {
            let candidates = Set(heapA.nonZeroPages()).union(heapB.nonZeroPages()).sorted()
            for page in candidates where pages.count < 16 {
                let address = heapA.settings.heapBase &+ UInt64(page * heapA.pageSize)
                let bytesA = try? heapA.read(address: address, length: heapA.pageSize)
                let bytesB = try? heapB.read(
                    address: heapB.settings.heapBase &+ UInt64(page * heapB.pageSize), length: heapB.pageSize)
                if bytesA != bytesB { pages.append(page) }
            }
        }
        return StateDifference(
            index: left.index, a: x, b: y, pageTableLine: line, pageTableHeader: tableHeader, heapPages: pages)
    }

    /// The readable report.
    package var lines: [String] {
        var out = ["A: \(pathA)", "B: \(pathB)"]
        if let comparedEntries {
            out.append("entries compared: \(comparedEntries.lowerBound)...\(comparedEntries.upperBound)")
        } else {
            out.append("entries compared: none (the logs do not overlap)")
        }
        if let d = entryDifference {
            out.append("logs differ first at index \(d.index):")
            out.append("  A: " + (d.a.map { "term \($0.term) \($0.type) \($0.summary)" } ?? "no entry"))
            out.append("  B: " + (d.b.map { "term \($0.term) \($0.type) \($0.summary)" } ?? "no entry"))
            if differingIndices.count > 1 {
                out.append("  \(differingIndices.count) differing indices in the overlap")
            }
        } else if comparedEntries == nil {
            out.append("logs: no index is held by both (compacted at different points); the states are compared")
        } else {
            out.append("logs: identical where both hold entries")
        }
        if let note = stateNote { out.append(note) }
        if let d = stateDifference {
            out.append("replayed states differ first at index \(d.index) (replayed from \(stateStart ?? 0)):")
            out.append("  A: \(d.a)")
            out.append("  B: \(d.b)")
            if let line = d.pageTableLine {
                out.append("  page table, first differing row" + (d.pageTableHeader.map { " of \($0)" } ?? "") + ":")
                out.append("    A: \(line.a)")
                out.append("    B: \(line.b)")
            }
            if !d.heapPages.isEmpty {
                out.append("  heap pages that differ: " + d.heapPages.map(String.init).joined(separator: ", "))
            }
        } else if let target = stateTarget, let digest = finalDigest {
            out.append("replayed states: identical at index \(target) (\(digest))")
        }
        return out
    }

    /// The JSON report (`--json`).
    package var json: JSONValue {
        var object: [String: JSONValue] = [
            "a": .string(pathA), "b": .string(pathB), "identical": .bool(identical),
            "first_log_difference": entryDifference.map { .uint($0.index) } ?? .null,
            "first_state_difference": stateDifference.map { .uint($0.index) } ?? .null,
            "differing_indices": .uint(UInt64(differingIndices.count)),
        ]
        if let target = stateTarget { object["state_compared_at"] = .uint(target) }
        if let note = stateNote { object["note"] = .string(note) }
        if let d = entryDifference {
            object["entry_a"] = d.a?.json ?? .null
            object["entry_b"] = d.b?.json ?? .null
        }
        if let d = stateDifference {
            object["digest_a"] = .string(d.a.description)
            object["digest_b"] = .string(d.b.description)
            object["heap_pages"] = .array(d.heapPages.map { .uint(UInt64($0)) })
        }
        return .object(object)
    }
}
