import Dispatch
import Foundation
import GallocyCodec
import GallocyRaft
import GallocyRuntime
import GallocyStateMachine

#if canImport(Glibc)
    import Glibc
#endif

/// `gallocy bench release`: what a release costs (docs/runtime.md, "Benchmarks").
///
/// 1. **The apply path** (what every member does with a committed write entry), in this process
///    before any member starts: `HeapImage.apply` of one entry of n page diffs into a heap image
///    that owns its memory (a `gallocy node`), into the runtime's alias through `RuntimeHeap`
///    without hiding the pages, with hiding (the default: the pages of one entry change
///    together), and with hiding onto pages that are dirty here (rule 2's byte merge). Medians
///    over `applyRounds` entries. While the two runtime variants run, a racy reader thread
///    (`RacyReader`, as in the torn-page check) reads the pages: without hiding it may catch an
///    entry half applied, with hiding it must not (a control for the torn-page check).
/// 2. **The release** (`Member.commit()`: dirty pages collected and diffed, one entry proposed,
///    committed by a majority, applied here), on an in-process member of a local three-member
///    cluster whose other two members are `gallocy node` processes (this executable), for n
///    dirty pages with 8 bytes or the whole page changed in each.
package struct ReleaseBenchmark {
    package var pageCounts = [1, 16, 256]
    package var bytesPerPage = [8, 4096]
    package var seconds: Double = 2
    package var applyRounds = 200
    package var executable = "/proc/self/exe"

    package init() {}

    package struct ApplyRow: Sendable {
        package var pages: Int
        package var bytesPerPage: Int
        /// Median microseconds per entry.
        package var plain: Double
        package var unhidden: Double
        package var hidden: Double
        package var hiddenDirty: Double
        /// Racy reader passes that saw an entry half applied, without and with hiding.
        package var tornUnhidden: Int
        package var tornHidden: Int
        package var readerPasses: Int
    }

    package struct ReleaseRow: Sendable {
        package var pages: Int
        package var bytesPerPage: Int
        package var releases: Int
        /// Milliseconds.
        package var p50: Double
        package var p99: Double
        package var max: Double
        package var pagesPerSecond: Double
    }

    // MARK: - The apply path

    package func measureApply(report: (ApplyRow) -> Void) throws {
        let pageSize = 4096
        let heapPages = (pageCounts.max() ?? 1) + 16
        let settings = ClusterSettings(
            clusterID: 1, heapBase: UInt64(SharedHeap.defaultBase), heapSize: UInt64(heapPages * pageSize),
            pageSize: UInt32(pageSize))
        for bytes in bytesPerPage {
            for n in pageCounts {
                // Entry k takes the pages from generation k + 1 to k + 2 (every word, or the
                // first `bytes`): generations only grow, as the racy reader assumes.
                let first = Self.writes(pages: n, pageSize: pageSize, bytes: bytes, from: 0, to: 1)
                let entries = (0..<applyRounds).map { k in
                    Self.writes(pages: n, pageSize: pageSize, bytes: bytes, from: UInt64(k + 1), to: UInt64(k + 2))
                }
                // A node's image.
                let plainImage = try Self.image(settings: settings)
                try plainImage.apply(first)
                let plain = try Self.time(rounds: applyRounds) { k in try plainImage.apply(entries[k]) }
                var row = ApplyRow(
                    pages: n, bytesPerPage: bytes, plain: plain, unhidden: 0, hidden: 0, hiddenDirty: 0, tornUnhidden: 0,
                    tornHidden: 0, readerPasses: 0)
                for variant in 0..<3 {
                    let mapping = try HeapMapping(
                        base: SharedHeap.defaultBase, size: heapPages * pageSize, pageSize: pageSize,
                        initialAccess: .readOnly, mode: .release)
                    defer { mapping.close() }
                    let runtime = RuntimeHeap(mapping: mapping, hidesChanges: variant != 0)
                    let image = try Self.image(base: mapping.alias, settings: settings)
                    image.writer = runtime
                    try image.apply(first)
                    if variant == 2 {
                        // Dirty here: the last word of every page written locally (twin faults).
                        for page in 0..<n {
                            mapping.viewPage(page).storeBytes(of: UInt64(7), toByteOffset: pageSize - 8, as: UInt64.self)
                        }
                    }
                    let words = UnsafePointer(mapping.viewPage(0).assumingMemoryBound(to: UInt64.self))
                    // The reader reads the first word of each page only when 8 bytes change.
                    let reader = RacyReader(
                        words: words, count: n * pageSize / 8, pageWords: pageSize / 8,
                        onlyWord: bytes >= pageSize ? nil : 0)
                    if variant < 2 { reader.start() }
                    let median = try Self.time(rounds: applyRounds) { k in try image.apply(entries[k]) }
                    if variant < 2 {
                        let stats = reader.stopNow()
                        row.readerPasses += stats.passes
                        if variant == 0 { row.tornUnhidden = stats.tornPasses } else { row.tornHidden = stats.tornPasses }
                    }
                    switch variant {
                    case 0: row.unhidden = median
                    case 1: row.hidden = median
                    default: row.hiddenDirty = median
                    }
                    _ = mapping.collectDirty()
                }
                report(row)
            }
        }
    }

    private static func image(settings: ClusterSettings) throws -> HeapImage {
        do { return try HeapImage(settings: settings) } catch { throw NodeError(.storage, error.message) }
    }

    private static func image(base: UnsafeMutableRawPointer, settings: ClusterSettings) throws -> HeapImage {
        do { return try HeapImage(base: base, settings: settings, initiallyZero: true) } catch {
            throw NodeError(.storage, error.message)
        }
    }

    /// One write entry's diffs: `pages` pages whose first `bytes` bytes (in words) go from
    /// generation `from` to `to` (TornPageCheck's encoding).
    static func writes(pages: Int, pageSize: Int, bytes: Int, from: UInt64, to: UInt64) -> [PageWrite] {
        let old = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        let new = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer {
            old.deallocate()
            new.deallocate()
        }
        for w in 0..<pageSize / 8 {
            let inside = w * 8 < bytes
            old.storeBytes(of: inside ? TornPageCheck.encode(from) : 0, toByteOffset: w * 8, as: UInt64.self)
            new.storeBytes(of: inside ? TornPageCheck.encode(to) : 0, toByteOffset: w * 8, as: UInt64.self)
        }
        let diff = PageDiff.make(twin: UnsafeRawBufferPointer(old), page: UnsafeRawBufferPointer(new))
        return (0..<pages).map { PageWrite(page: UInt64($0), diff: diff) }
    }

    /// Median microseconds of `body` over `rounds` calls.
    private static func time(rounds: Int, _ body: (Int) throws -> Void) throws -> Double {
        var samples: [Double] = []
        samples.reserveCapacity(rounds)
        for k in 0..<rounds {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body(k)
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    // MARK: - Releases on a cluster

    package func measureReleases(
        note: (String) -> Void, report: (ReleaseRow) -> Void
    ) async throws {
        var template = Array("/tmp/gallocy-bench-release-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw NodeError(.storage, "cannot create a temporary directory") }
        let directory = String(cString: made)
        let ports = try (0..<6).map { _ in try LocalCluster.freePort() }
        var pids: [pid_t] = []
        defer {
            for pid in pids { kill(pid, SIGTERM) }
            for pid in pids {
                var status: Int32 = 0
                _ = waitpid(pid, &status, 0)
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
        for id in 2...3 {
            var arguments = [
                "node", "--id", "\(id)", "--data", "\(directory)/n\(id)", "--listen", "127.0.0.1:\(ports[2 * (id - 1)])",
                "--http", "127.0.0.1:\(ports[2 * (id - 1) + 1])", "--log-level", "warning",
            ]
            for peer in 1...3 where peer != id { arguments += ["--peer", "\(peer)=127.0.0.1:\(ports[2 * (peer - 1)])"] }
            pids.append(try LocalCluster.spawn(executable, arguments, log: "\(directory)/n\(id).log"))
        }
        var options = MemberOptions(
            id: 1, dataDirectory: "\(directory)/n1", listen: "127.0.0.1:\(ports[0])", http: "127.0.0.1:\(ports[1])",
            peers: [2: "127.0.0.1:\(ports[2])", 3: "127.0.0.1:\(ports[4])"])
        options.logLevel = "warning"
        let member = try await Member.start(options, readyTimeout: .seconds(60))
        let pageSize = Int(member.settings.pageSize)
        let maxPages = pageCounts.max() ?? 1
        let block = try await member.allocate(byteCount: (maxPages + 1) * pageSize)
        let start = MemberJobProcess.pageAligned(block, pageSize: pageSize)
        let leader = try await member.node.onDriver { driver, done in done(.success(driver.node.leader)) }
        note("member 1 (in this process) with members 2 and 3 (`gallocy node`); leader: member \(leader)")
        var generation: UInt64 = 0
        func dirty(_ n: Int, _ bytes: Int) {
            generation += 1
            let value = TornPageCheck.encode(generation)
            for page in 0..<n {
                let words = (start + page * pageSize).assumingMemoryBound(to: UInt64.self)
                for w in 0..<max(1, bytes / 8) { words[w] = value }
            }
        }
        // Warm up: every page faulted in and published once.
        dirty(maxPages, pageSize)
        try await member.commit()
        let before = member.runtimeCounters
        for bytes in bytesPerPage {
            for n in pageCounts {
                var samples: [Double] = []
                let clock = ContinuousClock()
                let end = clock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
                repeat {
                    dirty(n, bytes)
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try await member.commit()
                    samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                } while clock.now < end || samples.count < 5
                samples.sort()
                let total = samples.reduce(0, +)
                report(
                    ReleaseRow(
                        pages: n, bytesPerPage: bytes, releases: samples.count, p50: samples[samples.count / 2],
                        p99: samples[Int(0.99 * Double(samples.count - 1))], max: samples.last ?? 0,
                        pagesPerSecond: Double(n * samples.count) / (total / 1000)))
            }
        }
        let after = member.runtimeCounters
        note(
            "runtime counters of member 1 over the runs: \(after.releases - before.releases) releases, "
                + "\(after.changes - before.changes) changes applied, \(after.pagesHidden - before.pagesHidden) pages hidden, "
                + "\(after.undone - before.undone) undone")
        await member.stop()
    }
}
