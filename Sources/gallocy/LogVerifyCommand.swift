import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log verify --data DIR`: every stored checksum and the structure of the log, the
/// snapshot and the metadata. Exit 0 when intact; otherwise 1, with the first bad index or record
/// named on the first line of stderr.
struct LogVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every checksum and the structure of the log, snapshot and metadata.")

    @Option(help: "The member's data directory.") var data: String
    @Option(help: "Seconds after which the storage check (run in a child process) is given up.") var timeout: Double =
        600

    func run() throws {
        try runLogTool("verify") { () throws(LogToolError) in
            try LogDirectory.checkIsDirectory(data)
            // Storage first, in a child process: damage inside LMDB's own pages may crash liblmdb,
            // and that must become a report, not a crash of this tool.
            let storage: InternalVerifyCommand.IsolatedVerification
            do {
                storage = try InternalVerifyCommand.verifyInChildProcess(data: data, timeout: timeout)
            } catch {
                throw LogToolError(.replayFailed, "cannot run the storage verifier: \(error)")
            }
            guard storage.intact else {
                var lines = storage.text.split(separator: "\n").map(String.init)
                let first = lines.isEmpty ? "damaged" : lines.removeFirst()
                let named = first.replacingPrefix(#/^\d+ problem\(s\), the first: /#)
                lines.forEach(LogOutput.line)
                if named.contains("not a Gallocy data directory") {
                    throw LogToolError(.notADataDirectory, named)
                }
                if named.contains("layout version") {
                    throw LogToolError(.unsupportedVersion, named)
                }
                throw LogToolError(.corrupted, "\(data) is damaged: \(named)")
            }
            // Then what is inside the records: commands, membership changes, the snapshot.
            let directory = try LogDirectory(path: data)
            let bar = LogProgressBar("verifying")
            let content = try LogContentCheck(directory, progress: bar.callback)
            bar.finish()
            if let problem = content.problem {
                throw LogToolError(.corrupted, "\(data) is damaged: \(problem)")
            }
            let info = LogInfo(directory)
            var text = "intact: "
            text +=
                info.entryCount == 0
                ? "the log is empty"
                : "log \(info.firstIndex)...\(info.lastIndex) (\(info.entryCount) entries, \(content.bytesChecked) bytes)"
            if content.snapshotChecked {
                text += ", snapshot at \(info.snapshotIndex) (\(info.snapshotBytes) bytes) restores"
            }
            text += "; every checksum, command and record checks out"
            LogOutput.line(text)
        }
    }
}

extension String {
    func replacingPrefix(_ pattern: some RegexComponent) -> String {
        guard let match = prefixMatch(of: pattern) else { return self }
        return String(self[match.range.upperBound...])
    }
}
