import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// `gallocy log bench`: builds a log of `entries` entries in a scratch directory (a bootstrap,
/// 64 one-page blocks, then small writes and atomics, mixed half and half, from three members,
/// the atomics with session tags as HTTP clients send them) and measures how fast `replay` applies
/// it and `verify` checks it.
package struct LogReplayBenchmark {
    package var entries: Int
    package var logBytes: Int
    package var buildSeconds: Double
    package var replaySeconds: Double
    package var verifySeconds: Double
    /// The storage verifier plus the content check (commands decode).
    package var contentSeconds: Double
    package var digest: StateMachineDigest

    package var replayEntriesPerSecond: Double { Double(entries) / replaySeconds }
    package var verifyMegabytesPerSecond: Double { Double(logBytes) / 1e6 / verifySeconds }
    package var contentMegabytesPerSecond: Double { Double(logBytes) / 1e6 / contentSeconds }

    package static func run(entries count: Int, directory path: String, log: (String) -> Void) throws(LogToolError)
        -> Self
    {
        let settings = ClusterSettings(clusterID: 1, heapBase: 0x7f00_0000_0000, heapSize: 64 << 20, pageSize: 4096)
        let buildStart = LogReplayBenchmark.now()
        do {
            let storage = try RaftStorage(path: path)
            try storage.persist(
                hardState: HardState(term: 1, vote: 1, commit: 0), settings: settings,
                confState: ConfState(voters: [1, 2, 3]))
            var rng = SplitMix64(seed: 42)
            // A few dozen diffs, reused: encoding cost is not what is measured.
            let diffs: [PageDiff] = (0..<64).map { _ in
                let length = 8 + Int(rng.below(57))
                return PageDiff(writing: rng.bytes(length), atOffset: Int(rng.below(UInt64(4096 - length))))
            }
            var batch: [Entry] = []
            batch.reserveCapacity(10_000)
            var sequence: UInt64 = 0
            for index in 1...UInt64(count) {
                let body: CommandBody
                var client = ClientTag.none
                if index == 1 {
                    body = .bootstrap(settings)
                } else if index <= 65 {
                    body = .alloc(size: 4096, member: 1 + index % 3)
                } else if rng.below(2) == 0 {
                    let page = rng.below(64)
                    body = .write(
                        member: 1 + index % 3, pages: [PageWrite(page: page, diff: diffs[Int(rng.below(64))])],
                        releaseLock: nil, releaseEpoch: 0)
                } else {
                    // Blocks of a page are page-aligned, first fit from the base: block k is page k.
                    body = .atomic(address: settings.heapBase + rng.below(64) * 4096 + 8 * rng.below(512), op: .add(1))
                    sequence += 1
                    client = ClientTag(session: 1 + index % 3, sequence: sequence)
                }
                batch.append(
                    Entry(term: 1, index: index, data: CommandCodec.encode(Command(client: client, body: body))))
                if batch.count == 10_000 || index == UInt64(count) {
                    try storage.persist(entries: batch, hardState: HardState(term: 1, vote: 1, commit: index))
                    batch.removeAll(keepingCapacity: true)
                    if index % 100_000 == 0 { log("built \(index) entries") }
                }
            }
        } catch {
            throw LogToolError(.badArgument, "building the benchmark log in \(path): \(error.message)")
        }
        let buildSeconds = LogReplayBenchmark.now() - buildStart

        let replayStart = LogReplayBenchmark.now()
        let directory = try LogDirectory(path: path)
        let replay = try LogReplay(directory)
        let replaySeconds = LogReplayBenchmark.now() - replayStart
        let digest = try replay.digest()
        guard replay.entriesApplied == count else {
            throw LogToolError(.replayFailed, "replayed \(replay.entriesApplied) entries, expected \(count)")
        }

        let verifyStart = LogReplayBenchmark.now()
        let report: VerificationReport
        do {
            report = try StorageVerifier.verify(directory: path)
        } catch {
            throw LogToolError(error)
        }
        let verifySeconds = LogReplayBenchmark.now() - verifyStart
        guard report.isIntact else { throw LogToolError(.corrupted, report.description) }
        let contentStart = LogReplayBenchmark.now()
        let content = try LogContentCheck(directory)
        let contentSeconds = LogReplayBenchmark.now() - contentStart + verifySeconds
        if let problem = content.problem { throw LogToolError(.corrupted, problem) }
        return LogReplayBenchmark(
            entries: count, logBytes: replay.bytesRead, buildSeconds: buildSeconds, replaySeconds: replaySeconds,
            verifySeconds: verifySeconds, contentSeconds: contentSeconds, digest: digest)
    }
}

extension LogReplayBenchmark {
    /// Seconds on the monotonic clock.
    package static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
