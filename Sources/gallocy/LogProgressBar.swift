import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Glibc

/// A progress bar on stderr for long replays and verifies, drawn only when stderr is a terminal
/// (`isatty`), so that scripts and logs never see it; redrawn at most ten times a second.
final class LogProgressBar {
    private let label: String
    private let enabled: Bool
    private var lastDraw = 0.0
    private var drawn = false

    init(_ label: String) {
        self.label = label
        enabled = isatty(STDERR_FILENO) == 1
    }

    /// The callback to hand to a replay or a check; nil when there is no terminal.
    var callback: ((Int, Int) -> Void)? {
        enabled ? { [self] done, total in update(done, total) } : nil
    }

    func update(_ done: Int, _ total: Int) {
        let now = LogReplayBenchmark.now()
        guard now - lastDraw >= 0.1 || done == total else { return }
        lastDraw = now
        let fraction = total == 0 ? 1 : min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        LogOutput.errorRaw("\r\(label) [\(bar)] \(Int(fraction * 100))% \(done)/\(total) entries")
        drawn = true
    }

    /// Clears the bar's line.
    func finish() {
        if drawn { LogOutput.errorRaw("\r\u{1B}[K") }
        drawn = false
    }
}

extension LogOutput {
    /// Writes `text` to stderr as is (no newline).
    static func errorRaw(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
