import ArgumentParser
import GallocyStorage
import Glibc

/// `gallocy internal verify --data DIR [--isolated]`: runs the storage verifier and prints
/// `intact` (exit 0) or the problems (exit 1).
///
/// LMDB keeps no checksums of its own B-tree pages, and liblmdb can crash (SIGSEGV) reading a
/// data file whose pages were overwritten with garbage. With `--isolated` the verifier runs in a
/// child process (`/proc/self/exe internal verify`), and a crash of that child becomes a
/// report naming `data.mdb`, so the caller never crashes. `verifyInChildProcess(data:)` is the
/// same for other commands of this tool (`gallocy log verify`).
struct InternalVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Verify a data directory.")

    @Option(help: "The data directory.") var data: String
    @Flag(help: "Verify in a child process, so that a crash of liblmdb on damaged pages becomes a report.")
    var isolated = false
    @Option(help: "With --isolated: seconds after which the verifying child is killed.") var timeout: Double = 300

    func run() throws {
        if isolated {
            let outcome = try Self.verifyInChildProcess(data: data, timeout: timeout)
            guard outcome.intact else { throw InternalFailure(message: outcome.text) }
            writeLine(outcome.text)
            return
        }
        let report: VerificationReport
        do {
            report = try StorageVerifier.verify(directory: data)
        } catch {
            throw InternalFailure(message: error.message)
        }
        guard report.isIntact else { throw InternalFailure(message: report.description) }
        writeLine("intact")
    }

    /// What a verification in a child process found.
    struct IsolatedVerification {
        var intact: Bool
        /// `intact`, the verifier's report, or what killed the child.
        var text: String
    }

    /// Runs `gallocy internal verify --data DIR` in a child process and interprets its end.
    ///
    /// A child still running after `timeout` seconds (liblmdb can also loop forever in a B-tree
    /// whose damaged pointers form a cycle) is killed, and that is reported too.
    static func verifyInChildProcess(data: String, timeout: Double = 300) throws -> IsolatedVerification {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw InternalFailure(message: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let arguments = ["/proc/self/exe", "internal", "verify", "--data", data]
        let argv = arguments.map { strdup($0) } + [nil]
        // No backtrace from a crashing child: its crash is expected, and only its status matters.
        let environment: [String] = ["PATH=/usr/bin:/bin", "SWIFT_BACKTRACE=enable=no"]
        let envp = environment.map { strdup($0) } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, nil, argv, envp)
        close(fds[1])
        defer { close(fds[0]) }
        guard rc == 0 else {
            throw InternalFailure(message: "cannot start a verifier process: \(String(cString: strerror(rc)))")
        }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var timedOut = false
        let deadline = monotonicSeconds() + timeout
        while true {
            var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            let waitMillis = Int32(max(0, min(deadline - monotonicSeconds(), 3600)) * 1000)
            let ready = poll(&poller, 1, waitMillis)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                timedOut = true
                kill(pid, SIGKILL)
                break
            }
            let count = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            output += buffer[0..<count]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if timedOut {
            return IsolatedVerification(
                intact: false,
                text: "data.mdb: the verifier did not finish within \(timeout) s (liblmdb loops in damaged B-tree "
                    + "pages, or the directory is very large: raise --timeout)")
        }
        var text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: [" ", "\n"])
        if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
        let signal = status & 0x7F
        if signal != 0 {
            return IsolatedVerification(
                intact: false,
                text: "data.mdb: liblmdb crashed (signal \(signal)) reading it: its own B-tree pages are damaged "
                    + "(LMDB keeps no page checksums); restore this member from a copy or from the cluster")
        }
        return IsolatedVerification(intact: (status >> 8) & 0xFF == 0, text: text)
    }
}

/// Seconds on the monotonic clock.
private func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> String {
        String(drop(while: set.contains).reversed().drop(while: set.contains).reversed())
    }
}
