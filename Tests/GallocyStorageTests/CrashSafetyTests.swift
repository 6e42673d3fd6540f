import Foundation
import GallocyRaft
import Glibc
import Testing

@testable import GallocyStorage

/// Kills a real process that appends to a real data directory at random instants, and checks
/// that everything it acknowledged survived, whole.
@Suite struct CrashSafetyTests {
    /// The number of kills; each is one child process on a fresh directory.
    static let kills = 40

    @Test func acknowledgedBatchesSurviveSIGKILL() throws {
        let baseSeed =
            ProcessInfo.processInfo.environment["GALLOCY_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...1 << 40)
        print("crash safety: GALLOCY_SEED=\(baseSeed) reproduces this run")
        var delays = GallocyStorage.SplitMix64(seed: baseSeed)
        var totalAcks = 0
        var mapGrowths = 0
        var snapshotsAcknowledged = 0
        var killsDuringSnapshot = 0
        for round in 0..<Self.kills {
            let seed = baseSeed &+ UInt64(round)
            // One round in four kills at any instant from the start (opening, creating the
            // directory); the others wait for the first acknowledgement, so that the kill lands in
            // the middle of the work even on a loaded machine where starting takes long.
            let fromStart = round % 4 == 0
            let delayMicros = UInt32(delays.below(fromStart ? 250_000 : 200_000))
            try withTemporaryDirectory { path in
                let data = path + "/node"
                let child = try ChildProcess(["internal", "append-child", "--data", data, "--seed", String(seed)])
                var firstLines: [String] = []
                if !fromStart, let first = child.readLine() { firstLines.append(first) }
                usleep(delayMicros)
                child.kill(SIGKILL)
                child.waitForExit()
                let output = (firstLines + [child.readRemainingOutput()]).joined(separator: "\n")
                let acks = output.split(separator: "\n").map { $0.split(separator: " ") }
                let context: Comment =
                    "seed \(seed) (GALLOCY_SEED=\(baseSeed), round \(round)), killed \(delayMicros) µs after \(fromStart ? "the start" : "the first ack"), \(acks.count) acks; stderr: \(child.readStandardError())"

                // Recompute the steps; each acknowledgement must describe the same step.
                var workload = StorageWorkload(seed: seed)
                for (k, ack) in acks.enumerated() {
                    let step = workload.next()
                    let expected = [
                        "ack", "\(k + 1)", "\(workload.model.lastIndex)", "\(workload.model.hardState.term)",
                        "\(StorageWorkload.checksum(of: step))",
                    ]
                    try #require(ack.map(String.init) == expected, context)
                    if case .snapshot = step { snapshotsAcknowledged += 1 }
                }
                totalAcks += acks.count
                let acknowledged = workload.model
                var unacknowledged = workload
                if case .snapshot = unacknowledged.next(), !acks.isEmpty { killsDuringSnapshot += 1 }

                // What is on disk is the acknowledged state, or the one after it (durable, but the
                // child died before it could say so); nothing in between, nothing torn.
                // Opened with the child's initial map size: LMDB then maps max(that, the data), so a
                // larger map here means the child's data outgrew its initial map.
                let storage = try RaftStorage(path: data, options: .init(mapSize: 256 << 10))
                let report = storage.verify()
                #expect(report.isIntact, "\(report); \(context)")
                let matchesAcknowledged = StorageWorkload.mismatch(between: storage, and: acknowledged)
                let matchesNext = StorageWorkload.mismatch(between: storage, and: unacknowledged.model)
                #expect(
                    matchesAcknowledged == nil || matchesNext == nil,
                    "neither the acknowledged state (\(matchesAcknowledged ?? "")) nor the next (\(matchesNext ?? "")); \(context)"
                )
                #expect(storage.hardState.commit <= storage.lastIndex, context)
                #expect(storage.hardState.term >= storage.lastTerm, context)
                if storage.environment.mapSize > 256 << 10 { mapGrowths += 1 }

                // The recovered directory carries on: a few more steps land and read back.
                var carryOn = matchesAcknowledged == nil ? workload : unacknowledged
                for _ in 0..<3 {
                    try StorageWorkload.perform(carryOn.next(), on: storage)
                }
                #expect(StorageWorkload.mismatch(between: storage, and: carryOn.model) == nil, context)
            }
        }
        print(
            "crash safety: \(Self.kills) kills, \(totalAcks) acknowledged steps (\(snapshotsAcknowledged) snapshots), \(killsDuringSnapshot) kills during or right after a snapshot, map grew in \(mapGrowths) runs; GALLOCY_SEED=\(baseSeed)"
        )
        // The kills must have landed in the middle of real work, not all before the first ack.
        #expect(
            totalAcks > Self.kills,
            "only \(totalAcks) acknowledgements in \(Self.kills) runs (GALLOCY_SEED=\(baseSeed))")
        #expect(mapGrowths > 0, "the map never grew (GALLOCY_SEED=\(baseSeed))")
    }
}

/// An offline reader (the log tool) on the directory of a running member.
@Suite struct ConcurrentReaderTests {
    @Test func readOnlyReaderFollowsAWriterProcessThatGrowsTheMap() throws {
        try withTemporaryDirectory { path in
            let child = try ChildProcess(["internal", "append-child", "--data", path, "--seed", "11", "--steps", "400"])
            let first = try #require(child.readLine())
            #expect(first.hasPrefix("ack 1 "))
            let environment = try LMDBEnvironment(path: path, configuration: .init(maxDatabases: 4, readOnly: true))
            let log = try environment.openDatabase("log", create: false)
            let openedWith = environment.mapSize
            var acks = 1
            var reads = 0
            var lastSeen = 0
            // Read while the child appends (its map starts at 256 KiB and grows many times).
            while child.readLine() != nil {
                acks += 1
                lastSeen = try environment.read { txn in try txn.count(in: log) }
                reads += 1
                if reads % 50 == 0 { #expect(try StorageVerifier.verify(directory: path).isIntact) }
            }
            #expect(child.exitCode == 0)
            #expect(acks == 400 && reads == acks - 1)
            // The writer outgrew the map the reader opened with (unless the reader opened late,
            // after all of it), and the reader adopted the larger map rather than failing.
            if environment.usedBytes > openedWith { #expect(environment.mapSize > openedWith) }
            #expect(environment.mapSize >= environment.usedBytes)
            #expect(lastSeen > 0)
            let report = try StorageVerifier.verify(directory: path)
            #expect(report.isIntact, "\(report)")
        }
    }
}

/// The workload the crash test relies on must itself be right: performed without crashes, the
/// storage matches its model after every step.
@Suite struct StorageWorkloadTests {
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func storageMatchesTheModelStepByStep(seed: UInt64) throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path, options: .init(mapSize: 256 << 10, snapshotChunkSize: 64 << 10))
            var workload = StorageWorkload(seed: seed)
            var kinds: Set<String> = []
            for _ in 0..<100 {
                let step = workload.next()
                try StorageWorkload.perform(step, on: storage)
                switch step {
                case .persist: kinds.insert("persist")
                case .compact: kinds.insert("compact")
                case .snapshot(_, let replacingLog): kinds.insert(replacingLog ? "install" : "snapshot")
                }
                if workload.stepsTaken % 25 == 0 {
                    let mismatch = StorageWorkload.mismatch(between: storage, and: workload.model)
                    try #require(mismatch == nil, "seed \(seed), step \(workload.stepsTaken): \(mismatch ?? "")")
                }
            }
            #expect(storage.verify().isIntact)
            #expect(kinds.isSuperset(of: ["persist", "compact"]))
        }
    }

    @Test func sameSeedSameSteps() {
        var a = StorageWorkload(seed: 42)
        var b = StorageWorkload(seed: 42)
        for _ in 0..<50 { #expect(a.next() == b.next()) }
    }
}
