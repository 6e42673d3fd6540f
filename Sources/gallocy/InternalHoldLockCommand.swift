import ArgumentParser
import GallocyStorage
import Glibc

/// `gallocy internal hold-lock --data DIR`: takes the data directory's lock, prints
/// `locked <pid>`, and holds it until killed (or `--seconds` pass). Fails like `gallocy node`
/// would when another process holds it.
struct InternalHoldLockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hold-lock", abstract: "Hold a data directory's lock.")

    @Option(help: "The data directory.") var data: String
    @Option(help: "Give up the lock and exit after this many seconds.") var seconds: UInt32 = 30

    func run() throws {
        let directory: DataDirectory
        do {
            directory = try DataDirectory(path: data)
        } catch {
            throw InternalFailure(message: error.message)
        }
        writeLine("locked \(getpid())")
        sleep(seconds)
        directory.release()
    }
}

/// A failure of an internal command: its message goes to stderr as the first line, exit 1.
struct InternalFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Writes `line` and a newline to stdout at once, unbuffered, so a parent that kills this process
/// right after still reads the whole line.
func writeLine(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}
