import ArgumentParser
import GallocyStorage
import Glibc

/// `gallocy bench storage`: durable log appends per second, ours against raw LMDB.
struct BenchStorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Log appends per second and MB/s with sync on, through RaftStorage and through raw LMDB.",
        discussion: """
            For batches of 1, 64 and 1024 entries of 64 B and 4 KiB, appends for --seconds per case to a \
            fresh directory, once through RaftStorage.persist (codec, checksums, hard state) and once as a \
            plain mdb_put loop in one transaction per batch, both with one synced commit per batch, and \
            prints the ratio ours/raw. The two alternate in --rounds short runs to the same disk, so that \
            both see the same stretch of its sync latency (which varies a lot), and the figures are the \
            medians. MB/s counts entry payload bytes (10^6 bytes).
            """
    )

    @Option(help: "Seconds to run each case (for ours and for raw each).") var seconds: Double = 1.5
    @Option(help: "Alternating rounds per case; the figures are medians.") var rounds: Int = 5
    @Flag(help: "Short: 0.3 seconds per case, 3 rounds.") var quick = false
    @Option(help: "Directory to create the scratch data directories in (default: $TMPDIR or /tmp).") var dir: String?

    func run() throws {
        let duration = quick ? 0.3 : seconds
        let rounds = quick ? 3 : self.rounds
        guard duration > 0 else { throw ValidationError("--seconds must be positive") }
        guard rounds > 0 else { throw ValidationError("--rounds must be positive") }
        let parent = try scratchDirectory()
        defer { rmdir(parent) }
        print(
            "gallocy bench storage: sync on, one commit per batch, \(duration) s per case for each side, "
                + "medians of \(rounds) alternating rounds, in \(parent)")
        print(
            pad("batch", 6) + pad("entry", 7) + pad("ours entries/s", 16) + pad("ours MB/s", 11)
                + pad("raw entries/s", 15)
                + pad("raw MB/s", 10) + pad("ours/raw", 10))
        for benchCase in StorageBenchmark.standardCases {
            let (ours, raw) = try StorageBenchmark.compare(benchCase, seconds: duration, rounds: rounds, parent: parent)
            let size = benchCase.entrySize >= 1024 ? "\(benchCase.entrySize / 1024) KiB" : "\(benchCase.entrySize) B"
            print(
                pad("\(benchCase.batch)", 6) + pad(size, 7) + pad(format(ours.entriesPerSecond, 0), 16)
                    + pad(format(ours.megabytesPerSecond, 2), 11) + pad(format(raw.entriesPerSecond, 0), 15)
                    + pad(format(raw.megabytesPerSecond, 2), 10)
                    + pad(format(ours.entriesPerSecond / raw.entriesPerSecond, 2), 10))
        }
    }

    private func scratchDirectory() throws -> String {
        let base = dir ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
        var template = Array((base + "/gallocy-bench-XXXXXX").utf8CString)
        guard
            let made = template.withUnsafeMutableBufferPointer({ buffer in buffer.baseAddress.flatMap { mkdtemp($0) } })
        else {
            throw ValidationError("cannot create a scratch directory in \(base): \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    private func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }

    private func format(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        if decimals == 0 { return String(Int(rounded)) }
        let whole = Int(rounded)
        let fraction = Int(((rounded - Double(whole)) * scale).rounded())
        let digits = String(fraction)
        return "\(whole)." + String(repeating: "0", count: max(0, decimals - digits.count)) + digits
    }
}
