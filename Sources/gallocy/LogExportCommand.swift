import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log export --data DIR [--to I] --out FILE`: the heap image as of an index.
struct LogExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the heap image as of an index to a file: heap_size bytes, byte 0 at heap_base.")

    @Option(help: "The member's data directory.") var data: String
    @Option(help: "Replay up to this index (default: the commit index).") var to: UInt64?
    @Option(help: "The file to write (sparse: only pages that are not zero take disk space).") var out: String

    func run() throws {
        try runLogTool("export") { () throws(LogToolError) in
            let directory = try LogDirectory(path: data)
            let bar = LogProgressBar("replaying")
            let replay: LogReplay
            do {
                defer { bar.finish() }
                replay = try LogReplay(directory, to: to, progress: bar.callback)
            }
            try replay.export(toPath: out)
            let size = replay.machine.heap?.size ?? 0
            let pages = replay.machine.heap?.nonZeroPages().count ?? 0
            LogOutput.line(
                "wrote \(out): \(size) bytes, the heap as of index \(replay.index) (\(pages) non-zero pages)")
        }
    }
}
