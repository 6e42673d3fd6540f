import ArgumentParser
import Dispatch
import Gallocy

/// `gallocy bench release`: the apply path of a write entry (a node's image, the runtime without
/// and with hiding) and the release latency of an in-process member of a local three-member
/// cluster, for 1, 16 and 256 dirty pages (docs/runtime.md, "Benchmarks"). Prints figures and
/// ratios; never fails on them.
struct BenchReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Time the apply path of a write entry and Member.commit() on a local 3-member cluster.")

    @Option(help: "Seconds per release case.") var seconds: Double = 2
    @Option(help: "Dirty page counts, comma-separated.") var pages: String = "1,16,256"
    @Option(name: .customLong("apply-rounds"), help: "Entries applied per apply case (the median is printed).")
    var applyRounds: Int = 200
    @Flag(name: .customLong("skip-cluster"), help: "Only the apply path.") var skipCluster = false

    func run() throws {
        var bench = ReleaseBenchmark()
        bench.seconds = seconds
        bench.applyRounds = max(3, applyRounds)
        bench.pageCounts = pages.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 && $0 <= 4096 }
        guard !bench.pageCounts.isEmpty else { throw ValidationError("--pages: expected numbers like 1,16,256") }

        print("apply path: one write entry of n page diffs, median µs per entry over \(bench.applyRounds) entries")
        print("  pages  bytes/page     node  runtime  +hiding  +dirty   hiding/node  hiding/unhidden  torn reads unhidden/hidden (passes)")
        try bench.measureApply { row in
            print(
                "  \(pad(row.pages, 5))  \(pad(row.bytesPerPage, 10))  \(num(row.plain, 7))  \(num(row.unhidden, 7))  \(num(row.hidden, 7))  \(num(row.hiddenDirty, 7))   \(num(row.hidden / row.plain, 9, 2))x  \(num(row.hidden / row.unhidden, 13, 2))x    \(row.tornUnhidden)/\(row.tornHidden) (\(row.readerPasses))"
            )
        }
        guard !skipCluster else { return }
        print("")
        print("release (Member.commit: collect, diff, propose, commit, apply here) on a local 3-member cluster")
        print("  pages  bytes/page  releases     p50 ms    p99 ms    max ms      pages/s   p50 vs 1 page")
        let benchmark = bench
        let failure = Box()
        let done = DispatchSemaphore(value: 0)
        Task {
            defer { done.signal() }
            var firstP50: [Int: Double] = [:]
            do {
                try await benchmark.measureReleases(note: { print("  (\($0))") }) { row in
                    if firstP50[row.bytesPerPage] == nil { firstP50[row.bytesPerPage] = row.p50 }
                    let ratio = row.p50 / (firstP50[row.bytesPerPage] ?? row.p50)
                    print(
                        "  \(pad(row.pages, 5))  \(pad(row.bytesPerPage, 10))  \(pad(row.releases, 8))  \(num(row.p50, 9, 2)) \(num(row.p99, 9, 2)) \(num(row.max, 9, 2))  \(num(row.pagesPerSecond, 11, 0))   \(num(ratio, 8, 2))x"
                    )
                }
            } catch {
                failure.message = "\(error)"
            }
        }
        done.wait()
        if let message = failure.message { throw ValidationError(message) }
    }
}

private final class Box: @unchecked Sendable {
    var message: String?
}

private func pad(_ value: Int, _ width: Int) -> String {
    let text = String(value)
    return String(repeating: " ", count: max(0, width - text.count)) + text
}

private func num(_ value: Double, _ width: Int, _ decimals: Int = 1) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = decimals == 0 ? String(Int(rounded)) : String(rounded)
    if decimals > 0, let dot = text.firstIndex(of: ".") {
        let have = text.distance(from: dot, to: text.endIndex) - 1
        if have < decimals { text += String(repeating: "0", count: decimals - have) }
    }
    return String(repeating: " ", count: max(0, width - text.count)) + text
}
