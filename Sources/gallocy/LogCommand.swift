import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Glibc

/// `gallocy log ...`: the log replay and inspection tool (CONTRACT.md 1.3, docs/log-tool.md).
/// Every subcommand opens the data directory read-only, without its lock and without a write
/// transaction, so it may be pointed at the directory of a running member.
struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Inspect, verify, replay and compare the log in a member's data directory (read-only).",
        discussion: """
            Works on the data directory of a stopped member, a copy of one, or that of a running member \
            (read-only: no lock is taken and nothing is written). Exit status: 0 success; 1 damaged, or \
            (diff) the directories differ; 2 not a Gallocy data directory; 3 unknown format version; \
            4 index out of range; 5 bad argument; 6 replay failed. The first line on stderr names the problem.
            """,
        subcommands: [
            LogInfoCommand.self, LogDumpCommand.self, LogVerifyCommand.self, LogReplayCommand.self,
            LogExportCommand.self, LogDiffCommand.self, LogBenchCommand.self, LogMakeFixtureCommand.self,
        ]
    )
}

/// Runs the body of a `gallocy log` subcommand: a `LogToolError` becomes one line on stderr,
/// `gallocy log <name>: <message>`, and the error's exit status.
func runLogTool(_ name: String, _ body: () throws(LogToolError) -> Void) throws {
    do {
        try body()
        LogOutput.flush()
    } catch {
        LogOutput.flush()
        LogOutput.error("gallocy log \(name): \(error.message)")
        throw ExitCode(error.exitStatus)
    }
}

/// Output helpers: stdout is buffered (dumps can be long), stderr is written at once.
enum LogOutput {
    // nonisolated(unsafe): a `gallocy log` command runs on the main thread alone; nothing else
    // touches the buffer.
    nonisolated(unsafe) private static var buffer: [UInt8] = []

    /// Writes `line` and a newline to stdout (buffered).
    static func line(_ line: String) {
        buffer.append(contentsOf: line.utf8)
        buffer.append(UInt8(ascii: "\n"))
        if buffer.count >= 1 << 16 { flush() }
    }

    static func flush() {
        var offset = 0
        while offset < buffer.count {
            let written = buffer[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { break }
            offset += written
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes `text` and a newline to stderr, unbuffered.
    static func error(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}
