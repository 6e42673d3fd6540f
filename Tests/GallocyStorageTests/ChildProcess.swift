import Foundation
import Glibc
import Synchronization

@testable import GallocyStorage

/// A `gallocy` child process with its stdout and stderr on pipes, spawned with `posix_spawn`.
final class ChildProcess {
    let pid: pid_t
    private let stdoutFD: Int32
    private let stderrFD: Int32
    private var reaped: Int32?
    private var pendingOutput: [UInt8] = []

    /// The built `gallocy` executable: `$GALLOCY_BIN`, else the one next to the test bundle
    /// (SwiftPM puts every product of a build in the same directory).
    static func gallocyBinary() throws -> String {
        if let override = ProcessInfo.processInfo.environment["GALLOCY_BIN"] { return override }
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        if let main = Bundle.main.executableURL { candidates.append(main.deletingLastPathComponent()) }
        for directory in candidates {
            let path = directory.appendingPathComponent("gallocy").path
            if access(path, X_OK) == 0 { return path }
        }
        throw StorageError(.notFound, "cannot find the gallocy binary next to \(candidates); set GALLOCY_BIN")
    }

    init(_ arguments: [String]) throws {
        let binary = try Self.gallocyBinary()
        // Pipes are made close-on-exec under one lock with the spawn itself, so that a child
        // spawned concurrently by another test never inherits (and holds open) these ends.
        (pid, stdoutFD, stderrFD) = try Self.spawnLock.withLock { _ in try Self.spawn(binary, arguments) }
    }

    private static let spawnLock = Mutex<Void>(())

    private static func spawn(_ binary: String, _ arguments: [String]) throws -> (pid_t, Int32, Int32) {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw StorageError(.io, "pipe failed") }
        for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        let environment: [String] = ["PATH=/usr/bin:/bin"]
        let envp = environment.map { strdup($0) } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var child = pid_t()
        let rc = posix_spawn(&child, binary, &actions, nil, argv, envp)
        close(out[1])
        close(err[1])
        guard rc == 0 else {
            close(out[0])
            close(err[0])
            throw StorageError(.io, "posix_spawn \(binary) failed: \(String(cString: strerror(rc)))")
        }
        return (child, out[0], err[0])
    }

    deinit {
        if reaped == nil {
            _ = Glibc.kill(pid, SIGKILL)
            _ = waitForExit()
        }
        close(stdoutFD)
        close(stderrFD)
    }

    func kill(_ signal: Int32 = SIGKILL) { _ = Glibc.kill(pid, signal) }

    /// Waits for the child to exit; returns its raw wait status.
    @discardableResult
    func waitForExit() -> Int32 {
        if let reaped { return reaped }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = status
        return status
    }

    /// The exit code, when the child exited normally.
    var exitCode: Int32? {
        let status = waitForExit()
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : nil
    }

    /// One line of stdout, blocking; nil at end of file.
    func readLine() -> String? {
        while true {
            if let newline = pendingOutput.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pendingOutput[..<newline], as: UTF8.self)
                pendingOutput.removeFirst(newline + 1)
                return line
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { read(stdoutFD, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return nil }
            pendingOutput += buffer[0..<count]
        }
    }

    /// Everything left on stdout, up to end of file (the child must have exited or be about to).
    func readRemainingOutput() -> String {
        var lines: [String] = []
        while let line = readLine() { lines.append(line) }
        return lines.joined(separator: "\n")
    }

    func readStandardError() -> String { Self.readAll(stderrFD) }

    private static func readAll(_ fd: Int32) -> String {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            result += buffer[0..<count]
        }
        return String(decoding: result, as: UTF8.self)
    }
}
