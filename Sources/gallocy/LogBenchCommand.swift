import ArgumentParser
import Foundation
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log bench [--entries N] [--dir D]`: replay and verify speed over a generated log.
struct LogBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Build a log of N entries (small writes and atomics) and measure replay and verify speed.")

    @Option(help: "Entries in the log.") var entries: Int = 1_000_000
    @Option(help: "Where to build it (a new directory; default: a temporary one, removed afterwards).") var dir: String?

    func run() throws {
        try runLogTool("bench") { () throws(LogToolError) in
            guard entries >= 100 else { throw LogToolError(.badArgument, "--entries must be at least 100") }
            let path = dir ?? NSTemporaryDirectory() + "gallocy-log-bench-\(getpid())"
            defer { if dir == nil { try? FileManager.default.removeItem(atPath: path) } }
            let result = try LogReplayBenchmark.run(entries: entries, directory: path) { LogOutput.error($0) }
            func f(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }
            LogOutput.line(
                "log: \(result.entries) entries, \(result.logBytes) bytes of entries (built in \(f(result.buildSeconds, 1)) s)"
            )
            LogOutput.line(
                "replay: \(f(result.replaySeconds, 2)) s, \(f(result.replayEntriesPerSecond)) entries/s (\(result.digest))"
            )
            LogOutput.line(
                "verify (storage: every entry's checksum and structure): \(f(result.verifySeconds, 2)) s, \(f(result.verifyMegabytesPerSecond, 1)) MB/s"
            )
            LogOutput.line(
                "verify (storage + every command decoded): \(f(result.contentSeconds, 2)) s, \(f(result.contentMegabytesPerSecond, 1)) MB/s"
            )
        }
    }
}
