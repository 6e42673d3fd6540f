import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log diff --data A --data B [--to I] [--json]`.
struct LogDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Find the first index where two members' logs, or the states they replay to, differ.",
        discussion: "Exit status 0 when they agree, 1 when they differ (the first line on stderr names the index).")

    @Option(name: .customLong("data"), help: "A data directory; give exactly two.") var data: [String] = []
    @Option(help: "Compare the replayed states at this index (default: the lower commit index).") var to: UInt64?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard data.count == 2 else { throw ValidationError("give exactly two data directories: --data A --data B") }
    }

    func run() throws {
        try runLogTool("diff") { () throws(LogToolError) in
            let a = try LogDirectory(path: data[0])
            let b = try LogDirectory(path: data[1])
            let diff = try LogDiff(a, b, to: to)
            if json {
                LogOutput.line(diff.json.jsonText)
            } else {
                diff.lines.forEach(LogOutput.line)
            }
            if let d = diff.entryDifference {
                var message = "the logs differ first at index \(d.index)"
                if let s = diff.stateDifference { message += "; the replayed states first at index \(s.index)" }
                throw LogToolError(.differ, message)
            }
            if let s = diff.stateDifference {
                throw LogToolError(.differ, "the replayed states differ first at index \(s.index)")
            }
        }
    }
}
