import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log info --data DIR [--json]`.
struct LogInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the log's bounds, the hard state, the snapshot, the members and the settings.")

    @Option(help: "The member's data directory.") var data: String
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        try runLogTool("info") { () throws(LogToolError) in
            let info = LogInfo(try LogDirectory(path: data))
            if json {
                LogOutput.line(info.json.jsonText)
            } else {
                info.lines.forEach(LogOutput.line)
            }
        }
    }
}
